//! The two test vectors printed in the text of EIP-2335 (scrypt and PBKDF2), both encrypting
//! the same secret under the password "𝔱𝔢𝔰𝔱𝔭𝔞𝔰𝔰𝔴𝔬𝔯𝔡🔑".

use phalanx_crypto::keystore::{EncryptionNonce, Kdf, Keystore, KeystoreError};

const PASSWORD: &str = "\u{1d531}\u{1d522}\u{1d530}\u{1d531}\u{1d52d}\u{1d51e}\u{1d530}\u{1d530}\u{1d534}\u{1d52c}\u{1d52f}\u{1d521}\u{1f511}";
const SECRET: &str = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f";
const PUBKEY: &str = "9612d7a727c9d0a22e185a1c768478dfe919cada9266988cb32359c11f2b7b27f4ae4040902382ae2910c15e2b420d07";

const SCRYPT: &str = r#"{
    "crypto": {
        "kdf": {
            "function": "scrypt",
            "params": {"dklen": 32, "n": 262144, "p": 1, "r": 8,
                       "salt": "d4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3"},
            "message": ""
        },
        "checksum": {"function": "sha256", "params": {},
                     "message": "d2217fe5f3e9a1e34581ef8a78f7c9928e436d36dacc5e846690a5581e8ea484"},
        "cipher": {"function": "aes-128-ctr", "params": {"iv": "264daa3f303d7259501c93d997d84fe6"},
                   "message": "06ae90d55fe0a6e9c5c3bc5b170827b2e5cce3929ed3f116c2811e6366dfe20f"}
    },
    "description": "This is a test keystore that uses scrypt to secure the secret.",
    "pubkey": "9612d7a727c9d0a22e185a1c768478dfe919cada9266988cb32359c11f2b7b27f4ae4040902382ae2910c15e2b420d07",
    "path": "m/12381/60/3141592653/589793238",
    "uuid": "1d85ae20-35c5-4611-98e8-aa14a633906f",
    "version": 4
}"#;

const PBKDF2: &str = r#"{
    "crypto": {
        "kdf": {
            "function": "pbkdf2",
            "params": {"dklen": 32, "c": 262144, "prf": "hmac-sha256",
                       "salt": "d4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3"},
            "message": ""
        },
        "checksum": {"function": "sha256", "params": {},
                     "message": "8a9f5d9912ed7e75ea794bc5a89bca5f193721d30868ade6f73043c6ea6febf1"},
        "cipher": {"function": "aes-128-ctr", "params": {"iv": "264daa3f303d7259501c93d997d84fe6"},
                   "message": "cee03fde2af33149775b7223e7845e4fb2c8ae1792e5f99fe9ecf474cc8c16ad"}
    },
    "description": "This is a test keystore that uses PBKDF2 to secure the secret.",
    "pubkey": "9612d7a727c9d0a22e185a1c768478dfe919cada9266988cb32359c11f2b7b27f4ae4040902382ae2910c15e2b420d07",
    "path": "m/12381/60/0/0",
    "uuid": "64625def-3331-4eea-ab6f-782f3ed16a83",
    "version": 4
}"#;

fn check(json: &str) {
    let ks = Keystore::from_json_str(json).expect("vector parses");
    let sk = ks.decrypt(PASSWORD).expect("vector decrypts");
    assert_eq!(hex::encode(sk.to_bytes()), SECRET);
    assert_eq!(hex::encode(sk.public_key().to_bytes()), PUBKEY);
    assert!(matches!(
        ks.decrypt("testpassword"),
        Err(KeystoreError::WrongPassword)
    ));
}

#[test]
fn eip2335_scrypt_vector() {
    check(SCRYPT);
}

#[test]
fn eip2335_pbkdf2_vector() {
    check(PBKDF2);
}

/// Re-encrypting the vector's secret with the vector's salt, IV and KDF reproduces the
/// vector's ciphertext and checksum exactly.
#[test]
fn eip2335_pbkdf2_reencrypts_byte_for_byte() {
    let original = Keystore::from_json_str(PBKDF2).unwrap();
    let sk = original.decrypt(PASSWORD).unwrap();
    let salt: [u8; 32] =
        hex::decode("d4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3")
            .unwrap()
            .try_into()
            .unwrap();
    let iv: [u8; 16] = hex::decode("264daa3f303d7259501c93d997d84fe6")
        .unwrap()
        .try_into()
        .unwrap();
    let nonce = EncryptionNonce {
        iv,
        uuid: original.uuid,
    };
    let kdf = Kdf::Pbkdf2 {
        c: 262144,
        salt: salt.to_vec(),
    };
    let again = Keystore::encrypt(
        &sk,
        PASSWORD,
        kdf,
        &nonce,
        &original.path,
        &original.description,
    )
    .unwrap();
    assert_eq!(again, original);
}

#[test]
fn malformed_keystores_are_typed_errors() {
    let bad_version = PBKDF2.replace("\"version\": 4", "\"version\": 3");
    assert!(matches!(
        Keystore::from_json_str(&bad_version),
        Err(KeystoreError::UnsupportedVersion(3))
    ));
    let bad_cipher = PBKDF2.replace("aes-128-ctr", "aes-256-gcm");
    assert!(matches!(
        Keystore::from_json_str(&bad_cipher),
        Err(KeystoreError::Unsupported { .. })
    ));
    let bad_hex = PBKDF2.replace("264daa3f303d7259501c93d997d84fe6", "zz");
    assert!(matches!(
        Keystore::from_json_str(&bad_hex),
        Err(KeystoreError::BadParam(_))
    ));
    assert!(matches!(
        Keystore::from_json_str("{"),
        Err(KeystoreError::Json(_))
    ));
}
