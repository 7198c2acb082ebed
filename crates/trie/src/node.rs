//! Trie nodes: in-memory form, RLP encoding and decoding.

use alloy_primitives::{B256, b256, keccak256};
use alloy_rlp::{EMPTY_STRING_CODE, Encodable, Header};

use crate::TrieError;
use crate::nibbles::{decode_hex_prefix, hex_prefix};

/// Root of the empty trie: `keccak256(rlp(""))`.
pub const EMPTY_ROOT: B256 =
    b256!("56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421");

/// A trie node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    /// End of a path with its value.
    Leaf { path: Vec<u8>, value: Vec<u8> },
    /// A shared path segment leading to a branch.
    Extension { path: Vec<u8>, child: Ptr },
    /// Sixteen children and an optional value for a key ending here.
    Branch {
        children: Box<[Option<Ptr>; 16]>,
        value: Option<Vec<u8>>,
    },
}

/// A reference to a node: by hash (in the store, not loaded) or loaded/modified in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ptr {
    Hash(B256),
    Node(Box<Node>),
}

/// How a parent refers to a committed child: by hash, or by embedding its short encoding.
pub(crate) enum ChildRef {
    Hash(B256),
    Inline(Vec<u8>),
}

impl ChildRef {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ChildRef::Hash(h) => h.as_slice().encode(out),
            ChildRef::Inline(raw) => out.extend_from_slice(raw),
        }
    }
}

fn encode_list(payload: &[u8], out: &mut Vec<u8>) {
    Header {
        list: true,
        payload_length: payload.len(),
    }
    .encode(out);
    out.extend_from_slice(payload);
}

/// Encodes a leaf.
pub(crate) fn encode_leaf(path: &[u8], value: &[u8], out: &mut Vec<u8>) {
    let mut payload = Vec::with_capacity(value.len() + path.len() / 2 + 8);
    hex_prefix(path, true).as_slice().encode(&mut payload);
    value.encode(&mut payload);
    encode_list(&payload, out);
}

/// Encodes an extension whose child is already committed.
pub(crate) fn encode_extension(path: &[u8], child: &ChildRef, out: &mut Vec<u8>) {
    let mut payload = Vec::with_capacity(40 + path.len() / 2);
    hex_prefix(path, false).as_slice().encode(&mut payload);
    child.encode(&mut payload);
    encode_list(&payload, out);
}

/// Encodes a branch whose children are already committed.
pub(crate) fn encode_branch(
    children: &[Option<ChildRef>; 16],
    value: Option<&[u8]>,
    out: &mut Vec<u8>,
) {
    let mut payload = Vec::with_capacity(16 * 33 + 1);
    for child in children {
        match child {
            Some(c) => c.encode(&mut payload),
            None => payload.push(EMPTY_STRING_CODE),
        }
    }
    match value {
        Some(v) => v.encode(&mut payload),
        None => payload.push(EMPTY_STRING_CODE),
    }
    encode_list(&payload, out);
}

/// Turns an encoded node into the reference its parent holds.
pub(crate) fn child_ref(encoded: Vec<u8>, emit: &mut impl FnMut(B256, Vec<u8>)) -> ChildRef {
    if encoded.len() < 32 {
        ChildRef::Inline(encoded)
    } else {
        let hash = keccak256(&encoded);
        emit(hash, encoded);
        ChildRef::Hash(hash)
    }
}

fn malformed(hash: B256, reason: impl Into<String>) -> TrieError {
    TrieError::Malformed {
        hash,
        reason: reason.into(),
    }
}

/// Splits an RLP list payload into its raw items (header included).
fn list_items(payload: &[u8], hash: B256) -> Result<Vec<&[u8]>, TrieError> {
    let mut items = Vec::with_capacity(17);
    let mut rest = payload;
    while !rest.is_empty() {
        let start = rest;
        let header =
            Header::decode(&mut rest).map_err(|e| malformed(hash, format!("bad item: {e}")))?;
        if rest.len() < header.payload_length {
            return Err(malformed(hash, "item overruns the node"));
        }
        rest = &rest[header.payload_length..];
        items.push(&start[..start.len() - rest.len()]);
        if items.len() > 17 {
            return Err(malformed(hash, "more than 17 items"));
        }
    }
    Ok(items)
}

/// Payload of an RLP string item.
fn string_item(item: &[u8], hash: B256) -> Result<&[u8], TrieError> {
    let mut buf = item;
    let header = Header::decode(&mut buf).map_err(|e| malformed(hash, e.to_string()))?;
    if header.list {
        return Err(malformed(hash, "expected a string, found a list"));
    }
    Ok(&buf[..header.payload_length.min(buf.len())])
}

fn decode_child(item: &[u8], hash: B256) -> Result<Option<Ptr>, TrieError> {
    let mut buf = item;
    let header = Header::decode(&mut buf).map_err(|e| malformed(hash, e.to_string()))?;
    if header.list {
        if item.len() >= 32 {
            return Err(malformed(hash, "embedded child of 32 bytes or more"));
        }
        return Ok(Some(Ptr::Node(Box::new(decode_node(item, hash)?))));
    }
    match header.payload_length {
        0 => Ok(None),
        32 => Ok(Some(Ptr::Hash(B256::from_slice(&buf[..32])))),
        n => Err(malformed(hash, format!("child reference of {n} bytes"))),
    }
}

/// Decodes one node. `hash` names it in errors.
pub(crate) fn decode_node(bytes: &[u8], hash: B256) -> Result<Node, TrieError> {
    let mut buf = bytes;
    let header = Header::decode(&mut buf).map_err(|e| malformed(hash, e.to_string()))?;
    if !header.list {
        return Err(malformed(hash, "a node must be an RLP list"));
    }
    if buf.len() != header.payload_length {
        return Err(malformed(hash, "length does not match its RLP header"));
    }
    let items = list_items(buf, hash)?;
    match items.len() {
        17 => {
            let mut children: Box<[Option<Ptr>; 16]> = Box::default();
            for (slot, item) in children.iter_mut().zip(&items) {
                *slot = decode_child(item, hash)?;
            }
            let value = string_item(items[16], hash)?;
            let value = (!value.is_empty()).then(|| value.to_vec());
            Ok(Node::Branch { children, value })
        }
        2 => {
            let hp = string_item(items[0], hash)?;
            let (path, leaf) =
                decode_hex_prefix(hp).ok_or_else(|| malformed(hash, "bad hex-prefix path"))?;
            if leaf {
                Ok(Node::Leaf {
                    path,
                    value: string_item(items[1], hash)?.to_vec(),
                })
            } else {
                if path.is_empty() {
                    return Err(malformed(hash, "extension with an empty path"));
                }
                let child = decode_child(items[1], hash)?
                    .ok_or_else(|| malformed(hash, "extension without a child"))?;
                Ok(Node::Extension { path, child })
            }
        }
        n => Err(malformed(hash, format!("{n} items; a node has 2 or 17"))),
    }
}
