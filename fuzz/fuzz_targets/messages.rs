//! Arbitrary bytes through every signed message a peer or a browser can
//! send (control commands, usage reports, vouchers, key proofs, voucher
//! requests, agreements, adverts): the whole `open` path, and the payload
//! decoder, whose every accepted input must re-encode to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparebox_protocol::{
    Agreement, CapacityAdvert, Checks, ControlCommand, KeyProof, Message, UsageReport, Voucher,
    VoucherRequest, decode_canonical, encode, open,
};

fn one<M: Message>(data: &[u8]) {
    let _ = open::<M>(data, &Checks::at(1_000_000));
    if let Ok(m) = decode_canonical::<M>(data, M::NAME) {
        assert_eq!(encode(&m), data);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 7 {
        0 => one::<ControlCommand>(rest),
        1 => one::<UsageReport>(rest),
        2 => one::<Voucher>(rest),
        3 => one::<KeyProof>(rest),
        4 => one::<VoucherRequest>(rest),
        5 => one::<Agreement>(rest),
        _ => one::<CapacityAdvert>(rest),
    }
});
