//! Nibble paths and the hex-prefix encoding.

/// The nibbles (half-bytes, high first) of `key`.
pub(crate) fn to_nibbles(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() * 2);
    for b in key {
        out.push(b >> 4);
        out.push(b & 0x0f);
    }
    out
}

/// Packs an even-length nibble path back into bytes; `None` if the length is odd.
pub(crate) fn from_nibbles(nibbles: &[u8]) -> Option<Vec<u8>> {
    if !nibbles.len().is_multiple_of(2) {
        return None;
    }
    Some(
        nibbles
            .chunks(2)
            .map(|p| (p[0] << 4) | (p[1] & 0x0f))
            .collect(),
    )
}

/// Hex-prefix encoding of a path, flagged as a leaf or an extension.
pub(crate) fn hex_prefix(path: &[u8], leaf: bool) -> Vec<u8> {
    let flag: u8 = if leaf { 2 } else { 0 };
    let mut out = Vec::with_capacity(path.len() / 2 + 1);
    let rest = if path.len() % 2 == 1 {
        out.push(((flag | 1) << 4) | path[0]);
        &path[1..]
    } else {
        out.push(flag << 4);
        path
    };
    for pair in rest.chunks(2) {
        out.push((pair[0] << 4) | pair[1]);
    }
    out
}

/// Decodes hex-prefix bytes into `(path, is_leaf)`.
pub(crate) fn decode_hex_prefix(bytes: &[u8]) -> Option<(Vec<u8>, bool)> {
    let (&first, rest) = bytes.split_first()?;
    let flag = first >> 4;
    if flag > 3 {
        return None;
    }
    let mut path = Vec::with_capacity(rest.len() * 2 + 1);
    if flag & 1 == 1 {
        path.push(first & 0x0f);
    } else if first & 0x0f != 0 {
        return None;
    }
    path.extend(to_nibbles(rest));
    Some((path, flag & 2 == 2))
}

/// Length of the common prefix of two paths.
pub(crate) fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_prefix_roundtrip() {
        for path in [vec![], vec![1], vec![1, 2], vec![0, 15, 3], vec![15; 64]] {
            for leaf in [false, true] {
                let hp = hex_prefix(&path, leaf);
                assert_eq!(decode_hex_prefix(&hp), Some((path.clone(), leaf)));
            }
        }
        // Yellow paper examples.
        assert_eq!(hex_prefix(&[1, 2, 3, 4, 5], false), vec![0x11, 0x23, 0x45]);
        assert_eq!(
            hex_prefix(&[0, 1, 2, 3, 4, 5], false),
            vec![0x00, 0x01, 0x23, 0x45]
        );
        assert_eq!(
            hex_prefix(&[15, 1, 12, 11, 8], true),
            vec![0x3f, 0x1c, 0xb8]
        );
        assert_eq!(decode_hex_prefix(&[0x41]), None);
        assert_eq!(decode_hex_prefix(&[0x05]), None);
    }
}
