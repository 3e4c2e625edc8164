//! Arbitrary bytes as an envelope: parsing never panics, and anything that
//! parses re-encodes to exactly the input (one canonical encoding).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparebox_protocol::{Envelope, Message, DeploymentOffer};

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = Envelope::from_bytes(data, DeploymentOffer::max_envelope()) {
        assert_eq!(env.to_bytes(), data);
    }
});
