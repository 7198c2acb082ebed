//! Random input to every decoder of this crate gives a typed error, never a panic.

use phalanx_crypto::{Keystore, PublicKey, SecretKey, Signature};
use proptest::prelude::*;

proptest! {
    #[test]
    fn random_bytes_never_panic_key_and_signature_decoders(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = PublicKey::from_bytes(&bytes);
        let _ = Signature::from_bytes(&bytes);
        let _ = SecretKey::from_bytes(&bytes);
        let _ = phalanx_crypto::bls::is_valid_g1_encoding(&bytes);
    }

    #[test]
    fn random_points_of_the_right_length_never_panic(
        pk in prop::array::uniform32(any::<u8>()),
        pk_tail in prop::array::uniform16(any::<u8>()),
        flags in any::<u8>(),
    ) {
        let mut bytes = [pk.as_slice(), pk_tail.as_slice()].concat();
        bytes[0] = flags;
        let _ = PublicKey::from_bytes(&bytes);
    }

    #[test]
    fn random_text_never_panics_the_keystore_parser(text in ".{0,400}") {
        let _ = Keystore::from_json_str(&text);
    }

    #[test]
    fn mangled_keystores_are_errors_or_decrypt(at in any::<prop::sample::Index>(), byte in 0x20u8..0x7f) {
        let sk = SecretKey::key_gen(&[4u8; 32]).unwrap();
        let nonce = phalanx_crypto::keystore::EncryptionNonce::from_seed([1u8; 32]);
        let kdf = phalanx_crypto::keystore::Kdf::Pbkdf2 { c: 16, salt: vec![2; 32] };
        let json = Keystore::encrypt(&sk, "pw", kdf, &nonce, "", "").unwrap().to_json_string();
        let mut bytes = json.into_bytes();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        if let Ok(text) = String::from_utf8(bytes) && let Ok(ks) = Keystore::from_json_str(&text) {
            // Either the edit was harmless and the key comes back, or decryption says why not.
            if let Ok(back) = ks.decrypt("pw") {
                prop_assert_eq!(back.to_bytes(), sk.to_bytes());
            }
        }
    }
}
