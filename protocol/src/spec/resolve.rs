//! Resolution: local file references are read, the artifact hashed, and the
//! spec rendered to its one canonical document, whose sha256 the offer
//! signs; and the reverse, a received document checked against that sha256.

use std::path::{Path, PathBuf};

use crate::{Digest, sha256};

use super::{AgentSpec, MAX_ARTIFACT_BYTES, ResolvedSpec, SpecError};

impl AgentSpec {
    /// Reads local references relative to `base_dir`, fills in the artifact's
    /// digest and size, and renders the canonical document.
    /// Returns the resolved spec and, for `wasi`, the artifact's path.
    pub fn resolve(&self, base_dir: &Path) -> Result<(ResolvedSpec, Option<PathBuf>), SpecError> {
        let mut spec = self.clone();
        let mut artifact_path = None;
        if let Some(a) = spec.artifact.as_mut() {
            if let Some(rel) = a.path.take() {
                let path = base_dir.join(&rel);
                let bytes = std::fs::read(&path).map_err(|source| SpecError::ReadReferenced {
                    field: "artifact.path".into(),
                    path: path.clone(),
                    source,
                })?;
                let digest = sha256(&bytes).to_hex();
                let size = bytes.len() as u64;
                if let Some(given) = &a.sha256
                    && !given.eq_ignore_ascii_case(&digest)
                {
                    return Err(SpecError::Resolve {
                        field: "artifact.sha256".into(),
                        problem: format!(
                            "{given} does not match {} (sha256 {digest})",
                            path.display()
                        ),
                    });
                }
                if let Some(given) = a.size
                    && given != size
                {
                    return Err(SpecError::Resolve {
                        field: "artifact.size".into(),
                        problem: format!(
                            "{given} does not match {} ({size} bytes)",
                            path.display()
                        ),
                    });
                }
                if size == 0 || size > MAX_ARTIFACT_BYTES {
                    return Err(SpecError::Resolve {
                        field: "artifact.path".into(),
                        problem: format!(
                            "{} is {size} bytes, outside 1..={MAX_ARTIFACT_BYTES}",
                            path.display()
                        ),
                    });
                }
                a.sha256 = Some(digest);
                a.size = Some(size);
                artifact_path = Some(path);
            } else if let Some(h) = a.sha256.as_mut() {
                *h = h.to_ascii_lowercase();
            }
        }
        if let Some(oc) = spec.openclaw.as_mut() {
            for (name, src) in oc.files.iter_mut() {
                if let Some(rel) = src.path.take() {
                    let path = base_dir.join(&rel);
                    let text = std::fs::read_to_string(&path).map_err(|source| {
                        SpecError::ReadReferenced {
                            field: format!("openclaw.files.\"{name}\".path"),
                            path,
                            source,
                        }
                    })?;
                    src.content = Some(text);
                }
            }
        }
        spec.validate().map_err(|errors| SpecError::Invalid {
            origin: "(resolved)".into(),
            errors,
        })?;
        let document = toml::to_string(&spec).map_err(|e| SpecError::Resolve {
            field: "(document)".into(),
            problem: e.to_string(),
        })?;
        let sha256 = sha256(document.as_bytes());
        Ok((
            ResolvedSpec {
                spec,
                document,
                sha256,
            },
            artifact_path,
        ))
    }
}

impl ResolvedSpec {
    /// Parses a document received with an offer, checking it against the
    /// offer's digest first. The document must be fully resolved.
    pub fn from_document(document: &str, expected: &Digest) -> Result<ResolvedSpec, SpecError> {
        let actual = sha256(document.as_bytes());
        if &actual != expected {
            return Err(SpecError::Resolve {
                field: "spec".into(),
                problem: format!(
                    "sha256 {actual} does not match the offer's spec_sha256 {expected}"
                ),
            });
        }
        let spec = AgentSpec::parse(document, "(offer)")?;
        if spec
            .artifact
            .as_ref()
            .is_some_and(|a| a.path.is_some() || a.sha256.is_none())
            || spec
                .openclaw
                .as_ref()
                .is_some_and(|o| o.files.values().any(|f| f.path.is_some()))
        {
            return Err(SpecError::Resolve {
                field: "spec".into(),
                problem: "document still refers to local files; resolve it before signing".into(),
            });
        }
        Ok(ResolvedSpec {
            spec,
            document: document.to_string(),
            sha256: actual,
        })
    }
}
