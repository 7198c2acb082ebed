//! Hash-to-curve onto G2 (`BLS12381G2_XMD:SHA-256_SSWU_RO_`), exposed so it can be checked
//! against the IETF vectors independently of signing.
//!
//! `blst`'s safe API hashes to G2 only inside `sign`; the affine coordinates of the hashed
//! point are reached through its C functions, which is the only `unsafe` in phalanx.

#![allow(unsafe_code)]

/// Affine coordinates of a G2 point, each `Fp2` element as `(c0, c1)` in big-endian bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct G2Affine {
    /// `x = x.0 + x.1·u`.
    pub x: ([u8; 48], [u8; 48]),
    /// `y = y.0 + y.1·u`.
    pub y: ([u8; 48], [u8; 48]),
}

/// `hash_to_curve(msg)` onto G2 with domain separation tag `dst`.
pub fn hash_to_g2(msg: &[u8], dst: &[u8]) -> G2Affine {
    let mut point = blst::blst_p2::default();
    let mut affine = blst::blst_p2_affine::default();
    let mut out = [[0u8; 48]; 4];
    // SAFETY: every pointer comes from a live Rust slice or a local of the exact type the C
    // function expects, with lengths passed alongside; blst reads `msg`/`dst` only within
    // those lengths and writes only the `out` structures, each sized by its type.
    unsafe {
        blst::blst_hash_to_g2(
            &mut point,
            msg.as_ptr(),
            msg.len(),
            dst.as_ptr(),
            dst.len(),
            std::ptr::null(),
            0,
        );
        blst::blst_p2_to_affine(&mut affine, &point);
        blst::blst_bendian_from_fp(out[0].as_mut_ptr(), &affine.x.fp[0]);
        blst::blst_bendian_from_fp(out[1].as_mut_ptr(), &affine.x.fp[1]);
        blst::blst_bendian_from_fp(out[2].as_mut_ptr(), &affine.y.fp[0]);
        blst::blst_bendian_from_fp(out[3].as_mut_ptr(), &affine.y.fp[1]);
    }
    G2Affine {
        x: (out[0], out[1]),
        y: (out[2], out[3]),
    }
}
