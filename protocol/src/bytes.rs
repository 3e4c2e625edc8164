//! Fixed-size byte strings (keys, ids, digests, signatures) with one serde
//! form per format: raw bytes in the binary wire encoding, lowercase hex in
//! human-readable formats (JSON, TOML).

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserializer, Serializer};
use std::fmt;

/// `#[serde(with = "crate::bytes")]` for `[u8; N]`.
pub fn serialize<S: Serializer, const N: usize>(v: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        s.serialize_str(&hex::encode(v))
    } else {
        // A tuple, not a sequence: no length prefix, N raw bytes.
        let mut t = s.serialize_tuple(N)?;
        for b in v {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

/// See [`serialize`].
pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<[u8; N], D::Error> {
    struct HexOrTuple<const N: usize>;
    impl<'de, const N: usize> Visitor<'de> for HexOrTuple<N> {
        type Value = [u8; N];
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{N} bytes (or {} hex digits)", N * 2)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let mut out = [0u8; N];
            hex::decode_to_slice(v, &mut out).map_err(|e| E::custom(format!("bad hex: {e}")))?;
            Ok(out)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = [0u8; N];
            for (i, slot) in out.iter_mut().enumerate() {
                *slot = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(i, &self))?;
            }
            Ok(out)
        }
    }
    if d.is_human_readable() {
        d.deserialize_str(HexOrTuple::<N>)
    } else {
        d.deserialize_tuple(N, HexOrTuple::<N>)
    }
}

/// Defines a `[u8; N]` newtype with hex `Display`/`FromStr` and the serde form above.
macro_rules! fixed_bytes {
    ($(#[$meta:meta])* $name:ident, $n:expr) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(test, derive(proptest_derive::Arbitrary))]
        pub struct $name(#[serde(with = "crate::bytes")] pub [u8; $n]);

        impl $name {
            /// Lowercase hex.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl std::str::FromStr for $name {
            type Err = hex::FromHexError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let mut out = [0u8; $n];
                hex::decode_to_slice(s.trim(), &mut out)?;
                Ok($name(out))
            }
        }
    };
}
pub(crate) use fixed_bytes;
