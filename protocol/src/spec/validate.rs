//! What a spec means, checked: every problem, each naming its field.

use std::time::Duration;

use crate::RuntimeKind;

use super::{AgentSpec, FieldError, MAX_ARTIFACT_BYTES, MAX_INLINE_BYTES, SPEC_VERSION};

pub(super) fn check_name(name: &str) -> Result<(), String> {
    let ok = (1..=63).contains(&name.len())
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` must be 1–63 characters of a-z, 0-9 and `-`, start with a letter and not end with `-`"
        ))
    }
}

pub(super) fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 128
        || name.contains('/')
        || name.contains('\\')
        || name == "."
        || name == ".."
        || name.contains('\0')
    {
        Err("must be a plain file name (no directories)".into())
    } else {
        Ok(())
    }
}

pub(super) fn check_host_pattern(h: &str) -> Result<(), String> {
    if h.contains("://") || h.contains('/') {
        return Err(format!(
            "`{h}` must be a host name, not a URL (drop the scheme and path)"
        ));
    }
    let (host, port) = match h.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (h, None),
    };
    if let Some(p) = port
        && p.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err(format!("`{h}` has an invalid port"));
    }
    let host = host.strip_prefix("*.").unwrap_or(host);
    // Read the host as an HTTP client will (WHATWG): `127.1`, `0x7f.1`,
    // `2130706433` and `10.1` are addresses, not names. Grants name hosts;
    // an address in any spelling is refused, so no grant depends on how a
    // second parser reads it.
    match url::Host::parse(host) {
        Ok(url::Host::Domain(_)) => {}
        Ok(url::Host::Ipv4(a)) => {
            return Err(format!(
                "`{h}` is an IP address ({a}); grant a host name instead"
            ));
        }
        Ok(url::Host::Ipv6(a)) => {
            return Err(format!(
                "`{h}` is an IP address ({a}); grant a host name instead"
            ));
        }
        Err(_) => {
            return Err(format!(
                "`{h}` is not a host name like `api.example.com` or `*.example.com`"
            ));
        }
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "`{h}` is not canonical; write it in lower case: `{}`",
            h.to_ascii_lowercase()
        ));
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(format!(
            "`{h}` is not a host name like `api.example.com` or `*.example.com`"
        ));
    }
    Ok(())
}

impl AgentSpec {
    /// Checks the spec's meaning; returns every problem found.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errs = Vec::new();
        let mut bad = |field: &str, problem: String| {
            errs.push(FieldError {
                field: field.to_string(),
                problem,
            })
        };

        if self.spec_version != SPEC_VERSION {
            bad(
                "spec_version",
                format!(
                    "version {} is not supported (this build reads {SPEC_VERSION})",
                    self.spec_version
                ),
            );
        }
        if let Err(p) = check_name(&self.name) {
            bad("name", p);
        }
        if self.description.len() > 1024 {
            bad("description", "longer than 1024 bytes".into());
        }

        match self.runtime {
            RuntimeKind::Wasi => {
                if self.openclaw.is_some() {
                    bad(
                        "openclaw",
                        "only allowed with runtime = \"openclaw\"".into(),
                    );
                }
                match &self.artifact {
                    None => bad(
                        "artifact",
                        "required for runtime = \"wasi\" (give sha256 and size, or path)".into(),
                    ),
                    Some(a) => {
                        if a.sha256.is_none() && a.path.is_none() {
                            bad("artifact", "give sha256 and size, or path".into());
                        }
                        if a.sha256.is_some() != a.size.is_some() && a.path.is_none() {
                            bad(
                                "artifact",
                                "sha256 and size go together (or give path)".into(),
                            );
                        }
                        if let Some(h) = &a.sha256
                            && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
                        {
                            bad("artifact.sha256", format!("`{h}` is not 64 hex digits"));
                        }
                        if let Some(size) = a.size
                            && (size == 0 || size > MAX_ARTIFACT_BYTES)
                        {
                            bad(
                                "artifact.size",
                                format!("{size} is outside 1..={MAX_ARTIFACT_BYTES} bytes"),
                            );
                        }
                    }
                }
            }
            RuntimeKind::Openclaw => {
                if self.artifact.is_some() {
                    bad("artifact", "only allowed with runtime = \"wasi\"".into());
                }
                match &self.openclaw {
                    None => bad(
                        "openclaw",
                        "required for runtime = \"openclaw\" (at least `model`)".into(),
                    ),
                    Some(oc) => {
                        if oc.model.trim().is_empty() {
                            bad("openclaw.model", "must not be empty".into());
                        }
                        let mut inline = oc.system_prompt.as_ref().map_or(0, String::len);
                        for (name, src) in &oc.files {
                            let field = format!("openclaw.files.\"{name}\"");
                            if let Err(p) = check_file_name(name) {
                                bad(&field, p);
                            }
                            match (&src.content, &src.path) {
                                (Some(c), None) => inline += c.len(),
                                (None, Some(_)) => {}
                                _ => bad(&field, "give exactly one of `content` or `path`".into()),
                            }
                        }
                        if inline > MAX_INLINE_BYTES {
                            bad(
                                "openclaw",
                                format!(
                                    "prompt and inline files total {inline} bytes, over {MAX_INLINE_BYTES}"
                                ),
                            );
                        }
                    }
                }
                if self.resources.memory_mib < 1024 {
                    bad(
                        "resources.memory_mib",
                        format!(
                            "{} MiB is too little for OpenClaw; a gateway needs at least 1024 MiB",
                            self.resources.memory_mib
                        ),
                    );
                }
            }
        }

        let r = &self.resources;
        if !(10..=256_000).contains(&r.cpu_millis) {
            bad(
                "resources.cpu_millis",
                format!("{} is outside 10..=256000 millicores", r.cpu_millis),
            );
        }
        if !(1..=1_048_576).contains(&r.memory_mib) {
            bad(
                "resources.memory_mib",
                format!("{} is outside 1..=1048576 MiB", r.memory_mib),
            );
        }
        if r.disk_mib > 16 * 1_048_576 {
            bad(
                "resources.disk_mib",
                format!("{} is over 16 TiB", r.disk_mib),
            );
        }
        if r.task_timeout < Duration::from_millis(100) || r.task_timeout > Duration::from_secs(3600)
        {
            bad(
                "resources.task_timeout",
                format!(
                    "{} is outside 100ms..=1h",
                    humantime::format_duration(r.task_timeout)
                ),
            );
        }

        for (i, m) in self.grants.llm_models.iter().enumerate() {
            if m.trim().is_empty() || m.len() > 128 {
                bad(
                    &format!("grants.llm_models[{i}]"),
                    "must be a model id of 1–128 characters".into(),
                );
            }
        }
        if self.grants.kv.max_bytes > 1 << 30 {
            bad(
                "grants.kv.max_bytes",
                format!("{} is over 1 GiB", self.grants.kv.max_bytes),
            );
        }
        for (i, h) in self.grants.outbound_hosts.iter().enumerate() {
            if let Err(p) = check_host_pattern(h) {
                bad(&format!("grants.outbound_hosts[{i}]"), p);
            }
        }
        for (i, t) in self.grants.tools.iter().enumerate() {
            if t.is_empty()
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                bad(
                    &format!("grants.tools[{i}]"),
                    format!("`{t}` is not a tool name (letters, digits, `_`, `-`)"),
                );
            }
        }
        if let Some(s) = &self.schedule
            && s.every < Duration::from_secs(60)
        {
            bad(
                "schedule.every",
                format!("{} is shorter than 1m", humantime::format_duration(s.every)),
            );
        }
        for (var, secret) in &self.secrets {
            let ok = var
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_uppercase() || b == b'_')
                && var
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if !ok {
                bad(
                    &format!("secrets.{var}"),
                    "variable names are UPPER_SNAKE_CASE".into(),
                );
            }
            if secret.trim().is_empty() {
                bad(
                    &format!("secrets.{var}"),
                    "must name a secret on the host".into(),
                );
            }
        }

        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }
}
