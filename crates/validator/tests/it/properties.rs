//! Whatever sequence of requests arrives, the signatures allowed never contain a double
//! proposal, a double vote or a surround vote.

use alloy_primitives::B256;
use phalanx_crypto::PublicKeyBytes;
use phalanx_validator::slashing_protection::SlashingProtection;
use proptest::prelude::*;

proptest! {
    #[test]
    fn allowed_signatures_are_never_slashable(
        requests in prop::collection::vec((any::<bool>(), 0u64..30, 0u64..30), 1..80),
    ) {
        let db = SlashingProtection::in_memory(B256::ZERO).unwrap();
        let key = PublicKeyBytes::repeat_byte(7);
        let mut slots = Vec::new();
        let mut votes: Vec<(u64, u64)> = Vec::new();
        for (is_block, a, b) in requests {
            if is_block {
                if db.check_and_record_declaration(&key, a).is_ok() {
                    prop_assert!(!slots.contains(&a), "two declarations at slot {}", a);
                    slots.push(a);
                }
            } else if db.check_and_record_attestation(&key, a, b).is_ok() {
                for &(s, t) in &votes {
                    prop_assert!(t != b, "double vote at target {}", b);
                    prop_assert!(!(a < s && t < b), "({a},{b}) surrounds ({s},{t})");
                    prop_assert!(!(s < a && b < t), "({s},{t}) surrounds ({a},{b})");
                }
                votes.push((a, b));
            }
        }
    }
}
