//! Random input to the spec and genesis parsers gives a typed error, never a panic.

use phalanx_spec::{ChainSpec, Genesis};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics_the_parsers(text in ".{0,400}") {
        let _ = ChainSpec::from_toml(&text, "random");
        let _ = Genesis::from_json(&text, "random");
    }

    #[test]
    fn mangled_specs_never_panic(at in any::<prop::sample::Index>(), byte in 0x20u8..0x7f) {
        let mut bytes = ChainSpec::preset("devnet").unwrap().to_toml().into_bytes();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        if let Ok(text) = String::from_utf8(bytes) && let Ok(spec) = ChainSpec::from_toml(&text, "m") {
            prop_assert!(spec.validate().is_ok());
        }
    }
}
