//! Arbitrary bytes through the whole offer path (envelope, signature,
//! payload decode, checks) and arbitrary payloads through the offer decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparebox_protocol::{decode_canonical, encode, open, Checks, DeploymentOffer};

fuzz_target!(|data: &[u8]| {
    let _ = open::<DeploymentOffer>(data, &Checks::at(1_000_000));
    if let Ok(offer) = decode_canonical::<DeploymentOffer>(data, "offer") {
        assert_eq!(encode(&offer), data);
    }
});
