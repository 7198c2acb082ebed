//! EIP-2333 key derivation (on `blst`) and EIP-2334 paths.
//!
//! A path is `m/12381/<coin>/<account>/<use>...`; each index is below 2^32. phalanx derives
//! every deterministic devnet key this way (see `phalanx-spec`'s genesis), so a seed fully
//! determines the validator, producer and executor keys.

use crate::bls::{BlsError, SecretKey};

/// A malformed derivation path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `m`.
    #[error("derivation path {0:?} must start with \"m\"")]
    NoRoot(String),
    /// A component is not an index below 2^32.
    #[error("derivation path {path:?}: component {component:?} is not an integer below 2^32")]
    BadComponent {
        /// The whole path.
        path: String,
        /// The offending component.
        component: String,
    },
}

/// Errors of key derivation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeriveError {
    /// Bad path.
    #[error(transparent)]
    Path(#[from] PathError),
    /// Bad seed.
    #[error(transparent)]
    Bls(#[from] BlsError),
}

/// Parses `m/12381/3600/0/0/0` into its indices.
pub fn parse_path(path: &str) -> Result<Vec<u32>, PathError> {
    let mut parts = path.split('/');
    if parts.next() != Some("m") {
        return Err(PathError::NoRoot(path.to_owned()));
    }
    parts
        .map(|c| {
            c.parse::<u32>().map_err(|_| PathError::BadComponent {
                path: path.to_owned(),
                component: c.to_owned(),
            })
        })
        .collect()
}

/// The master key of EIP-2333 from a seed of at least 32 bytes.
pub fn master_key(seed: &[u8]) -> Result<SecretKey, BlsError> {
    if seed.len() < 32 {
        return Err(BlsError::ShortKeyMaterial(seed.len()));
    }
    blst::min_pk::SecretKey::derive_master_eip2333(seed)
        .map(SecretKey::from_blst)
        .map_err(|_| BlsError::InvalidSecretKey)
}

/// Derives the key at `path` from `seed`.
pub fn derive_path(seed: &[u8], path: &str) -> Result<SecretKey, DeriveError> {
    let indices = parse_path(path)?;
    let mut sk = master_key(seed)?;
    for index in indices {
        sk = SecretKey::from_blst(sk.as_blst().derive_child_eip2333(index));
    }
    Ok(sk)
}

/// EIP-2334 signing-key path of validator `index`: `m/12381/3600/<index>/0/0`.
pub fn validator_signing_path(index: u32) -> String {
    format!("m/12381/3600/{index}/0/0")
}

#[cfg(test)]
mod tests {
    use super::*;

    // EIP-2333 test case 0 (from the EIP text).
    #[test]
    fn eip2333_case_0() {
        let seed = hex::decode("c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04").unwrap();
        let master = master_key(&seed).unwrap();
        let expected_master = alloy_primitives::U256::from_str_radix(
            "6083874454709270928345386274498605044986640685124978867557563392430687146096",
            10,
        )
        .unwrap();
        assert_eq!(master.to_bytes(), expected_master.to_be_bytes::<32>());
        let child = derive_path(&seed, "m/0").unwrap();
        let expected_child = alloy_primitives::U256::from_str_radix(
            "20397789859736650942317412262472558107875392172444076792671091975210932703118",
            10,
        )
        .unwrap();
        assert_eq!(child.to_bytes(), expected_child.to_be_bytes::<32>());
    }

    #[test]
    fn bad_paths_are_typed_errors() {
        assert!(matches!(parse_path("x/1"), Err(PathError::NoRoot(_))));
        assert!(matches!(
            parse_path("m/1/a"),
            Err(PathError::BadComponent { .. })
        ));
        assert!(matches!(
            parse_path("m/4294967296"),
            Err(PathError::BadComponent { .. })
        ));
        assert_eq!(
            parse_path("m/12381/3600/7/0/0").unwrap(),
            vec![12381, 3600, 7, 0, 0]
        );
    }
}
