//! Reading and updating a trie.

use alloy_primitives::{B256, keccak256};

use crate::TrieError;
use crate::nibbles::{common_prefix, from_nibbles, to_nibbles};
use crate::node::{
    ChildRef, EMPTY_ROOT, Node, Ptr, child_ref, decode_node, encode_branch, encode_extension,
    encode_leaf,
};
use crate::store::NodeSource;

fn load_raw<S: NodeSource>(source: &S, hash: B256) -> Result<Vec<u8>, TrieError> {
    source.node(&hash)?.ok_or(TrieError::MissingNode(hash))
}

fn load<S: NodeSource>(source: &S, ptr: Ptr) -> Result<Node, TrieError> {
    match ptr {
        Ptr::Node(node) => Ok(*node),
        Ptr::Hash(hash) => decode_node(&load_raw(source, hash)?, hash),
    }
}

fn leaf(path: &[u8], value: Vec<u8>) -> Ptr {
    Ptr::Node(Box::new(Node::Leaf {
        path: path.to_vec(),
        value,
    }))
}

/// Puts `value` at `path` (relative to the branch) into a fresh branch.
fn place(
    children: &mut [Option<Ptr>; 16],
    branch_value: &mut Option<Vec<u8>>,
    path: &[u8],
    value: Vec<u8>,
) {
    match path.split_first() {
        None => *branch_value = Some(value),
        Some((&first, rest)) => children[usize::from(first)] = Some(leaf(rest, value)),
    }
}

/// `branch`, behind an extension of `prefix` if it is not empty.
fn wrap(prefix: &[u8], branch: Node) -> Node {
    if prefix.is_empty() {
        branch
    } else {
        Node::Extension {
            path: prefix.to_vec(),
            child: Ptr::Node(Box::new(branch)),
        }
    }
}

fn insert<S: NodeSource>(
    source: &S,
    slot: Option<Ptr>,
    path: &[u8],
    value: Vec<u8>,
) -> Result<Ptr, TrieError> {
    let Some(ptr) = slot else {
        return Ok(leaf(path, value));
    };
    let node = match load(source, ptr)? {
        Node::Leaf {
            path: lp,
            value: lv,
        } => {
            if lp == path {
                Node::Leaf { path: lp, value }
            } else {
                let c = common_prefix(&lp, path);
                let mut children: Box<[Option<Ptr>; 16]> = Box::default();
                let mut bv = None;
                place(&mut children, &mut bv, &lp[c..], lv);
                place(&mut children, &mut bv, &path[c..], value);
                wrap(
                    &path[..c],
                    Node::Branch {
                        children,
                        value: bv,
                    },
                )
            }
        }
        Node::Extension { path: ep, child } => {
            let c = common_prefix(&ep, path);
            if c == ep.len() {
                Node::Extension {
                    child: insert(source, Some(child), &path[c..], value)?,
                    path: ep,
                }
            } else {
                let mut children: Box<[Option<Ptr>; 16]> = Box::default();
                let mut bv = None;
                let rest = &ep[c + 1..];
                let sub = if rest.is_empty() {
                    child
                } else {
                    Ptr::Node(Box::new(Node::Extension {
                        path: rest.to_vec(),
                        child,
                    }))
                };
                children[usize::from(ep[c])] = Some(sub);
                place(&mut children, &mut bv, &path[c..], value);
                wrap(
                    &ep[..c],
                    Node::Branch {
                        children,
                        value: bv,
                    },
                )
            }
        }
        Node::Branch {
            mut children,
            value: bv,
        } => match path.split_first() {
            None => Node::Branch {
                children,
                value: Some(value),
            },
            Some((&first, rest)) => {
                let i = usize::from(first);
                let old = children[i].take();
                children[i] = Some(insert(source, old, rest, value)?);
                Node::Branch {
                    children,
                    value: bv,
                }
            }
        },
    };
    Ok(Ptr::Node(Box::new(node)))
}

/// Puts back an untouched node: by its hash if it came from the store, so it is not re-encoded.
fn restore(original: Option<B256>, node: Node) -> Ptr {
    match original {
        Some(hash) => Ptr::Hash(hash),
        None => Ptr::Node(Box::new(node)),
    }
}

/// An extension of `prefix` over `child` after `child` changed: merges paths so no extension
/// points at a leaf or another extension.
fn merge_extension<S: NodeSource>(
    source: &S,
    prefix: Vec<u8>,
    child: Ptr,
) -> Result<Node, TrieError> {
    Ok(match load(source, child)? {
        Node::Leaf { path, value } => Node::Leaf {
            path: [prefix, path].concat(),
            value,
        },
        Node::Extension { path, child } => Node::Extension {
            path: [prefix, path].concat(),
            child,
        },
        branch @ Node::Branch { .. } => Node::Extension {
            path: prefix,
            child: Ptr::Node(Box::new(branch)),
        },
    })
}

/// A branch after one of its entries was removed: collapses it if one entry is left.
fn normalize_branch<S: NodeSource>(
    source: &S,
    mut children: Box<[Option<Ptr>; 16]>,
    value: Option<Vec<u8>>,
) -> Result<Option<Ptr>, TrieError> {
    let mut present = children
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is_some())
        .map(|(i, _)| i);
    let (first, second) = (present.next(), present.next());
    let node = match (first, second, value) {
        (None, _, None) => return Ok(None),
        (None, _, Some(value)) => Node::Leaf {
            path: Vec::new(),
            value,
        },
        (Some(i), None, None) => match children[i].take() {
            // The remaining child is loaded (it may be a sibling no touched key reaches).
            Some(child) => merge_extension(source, vec![i as u8], child)?,
            None => return Ok(None),
        },
        (_, _, value) => Node::Branch { children, value },
    };
    Ok(Some(Ptr::Node(Box::new(node))))
}

fn remove<S: NodeSource>(
    source: &S,
    slot: &mut Option<Ptr>,
    path: &[u8],
) -> Result<bool, TrieError> {
    let Some(ptr) = slot.take() else {
        return Ok(false);
    };
    let original = match &ptr {
        Ptr::Hash(hash) => Some(*hash),
        Ptr::Node(_) => None,
    };
    match load(source, ptr)? {
        Node::Leaf { path: lp, value } => {
            if lp == path {
                return Ok(true);
            }
            *slot = Some(restore(original, Node::Leaf { path: lp, value }));
            Ok(false)
        }
        Node::Extension { path: ep, child } => {
            if !path.starts_with(&ep) {
                *slot = Some(restore(original, Node::Extension { path: ep, child }));
                return Ok(false);
            }
            let mut child_slot = Some(child);
            let changed = remove(source, &mut child_slot, &path[ep.len()..])?;
            match (changed, child_slot) {
                (false, Some(child)) => {
                    *slot = Some(restore(original, Node::Extension { path: ep, child }));
                    Ok(false)
                }
                (_, Some(child)) => {
                    *slot = Some(Ptr::Node(Box::new(merge_extension(source, ep, child)?)));
                    Ok(true)
                }
                (_, None) => Ok(true),
            }
        }
        Node::Branch {
            mut children,
            mut value,
        } => {
            match path.split_first() {
                None => {
                    if value.take().is_none() {
                        *slot = Some(restore(original, Node::Branch { children, value }));
                        return Ok(false);
                    }
                }
                Some((&first, rest)) => {
                    if !remove(source, &mut children[usize::from(first)], rest)? {
                        *slot = Some(restore(original, Node::Branch { children, value }));
                        return Ok(false);
                    }
                }
            }
            *slot = normalize_branch(source, children, value)?;
            Ok(true)
        }
    }
}

fn commit_ptr(ptr: Ptr, emit: &mut impl FnMut(B256, Vec<u8>)) -> ChildRef {
    match ptr {
        Ptr::Hash(hash) => ChildRef::Hash(hash),
        Ptr::Node(node) => {
            let encoded = encode(*node, emit);
            child_ref(encoded, emit)
        }
    }
}

fn encode(node: Node, emit: &mut impl FnMut(B256, Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    match node {
        Node::Leaf { path, value } => encode_leaf(&path, &value, &mut out),
        Node::Extension { path, child } => {
            let child = commit_ptr(child, emit);
            encode_extension(&path, &child, &mut out);
        }
        Node::Branch { children, value } => {
            let refs: [Option<ChildRef>; 16] = (*children).map(|c| c.map(|p| commit_ptr(p, emit)));
            encode_branch(&refs, value.as_deref(), &mut out);
        }
    }
    out
}

/// A batch of changes to the trie under one root.
///
/// Nodes are loaded from `source` only along touched paths. If an operation returns an
/// error (a node is missing or malformed) the update is unusable and must be dropped.
pub struct TrieUpdate<S> {
    source: S,
    root: Option<Ptr>,
}

impl<S: NodeSource> TrieUpdate<S> {
    /// Starts a batch on the trie with root `root`.
    pub fn new(source: S, root: B256) -> Self {
        let root = (root != EMPTY_ROOT).then_some(Ptr::Hash(root));
        Self { source, root }
    }

    /// Sets `key` to `value`; an empty value removes the key.
    pub fn insert(&mut self, key: &[u8], value: Vec<u8>) -> Result<(), TrieError> {
        if value.is_empty() {
            return self.remove(key);
        }
        let root = self.root.take();
        self.root = Some(insert(&self.source, root, &to_nibbles(key), value)?);
        Ok(())
    }

    /// Removes `key` (nothing happens if it is absent).
    pub fn remove(&mut self, key: &[u8]) -> Result<(), TrieError> {
        remove(&self.source, &mut self.root, &to_nibbles(key))?;
        Ok(())
    }

    /// The source nodes are read from.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// Hashes every changed node; returns the new root and the new nodes `(hash, rlp)`, the
    /// root's among them (even when its encoding is shorter than 32 bytes).
    pub fn commit(self) -> (B256, Nodes) {
        let mut nodes = Vec::new();
        let root = match self.root {
            None => EMPTY_ROOT,
            Some(Ptr::Hash(hash)) => hash,
            Some(Ptr::Node(node)) => {
                let encoded = encode(*node, &mut |h, n| nodes.push((h, n)));
                let hash = keccak256(&encoded);
                nodes.push((hash, encoded));
                hash
            }
        };
        (root, nodes)
    }
}

/// Walks from `root` towards `key`, calling `visit` with each stored node's encoding.
fn walk<S: NodeSource>(
    source: &S,
    root: B256,
    key: &[u8],
    mut visit: impl FnMut(&[u8]),
) -> Result<Option<Vec<u8>>, TrieError> {
    if root == EMPTY_ROOT {
        return Ok(None);
    }
    let path = to_nibbles(key);
    let mut rest = path.as_slice();
    let mut ptr = Ptr::Hash(root);
    loop {
        let node = match ptr {
            Ptr::Hash(hash) => {
                let raw = load_raw(source, hash)?;
                visit(&raw);
                decode_node(&raw, hash)?
            }
            Ptr::Node(node) => *node,
        };
        match node {
            Node::Leaf { path, value } => return Ok((path == rest).then_some(value)),
            Node::Extension { path, child } => {
                if !rest.starts_with(&path) {
                    return Ok(None);
                }
                rest = &rest[path.len()..];
                ptr = child;
            }
            Node::Branch {
                mut children,
                value,
            } => {
                let Some((&first, tail)) = rest.split_first() else {
                    return Ok(value);
                };
                let Some(child) = children[usize::from(first)].take() else {
                    return Ok(None);
                };
                rest = tail;
                ptr = child;
            }
        }
    }
}

/// The value at `key` in the trie with root `root`.
pub fn get<S: NodeSource>(
    source: &S,
    root: B256,
    key: &[u8],
) -> Result<Option<Vec<u8>>, TrieError> {
    walk(source, root, key, |_| {})
}

/// The proof of `key` (present or absent): the stored nodes from the root towards the key.
pub fn prove<S: NodeSource>(source: &S, root: B256, key: &[u8]) -> Result<Vec<Vec<u8>>, TrieError> {
    let mut proof = Vec::new();
    walk(source, root, key, |raw| proof.push(raw.to_vec()))?;
    Ok(proof)
}

/// Trie nodes produced by a commit: `(hash, rlp)`.
pub type Nodes = Vec<(B256, Vec<u8>)>;

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Every `(key, value)` of the trie, in key order.
pub fn entries<S: NodeSource>(source: &S, root: B256) -> Result<Vec<Entry>, TrieError> {
    fn visit<S: NodeSource>(
        source: &S,
        ptr: Ptr,
        prefix: &mut Vec<u8>,
        out: &mut Vec<Entry>,
        root: B256,
    ) -> Result<(), TrieError> {
        let key = |p: &[u8]| {
            from_nibbles(p).ok_or(TrieError::Malformed {
                hash: root,
                reason: "key of odd nibble length".into(),
            })
        };
        match load(source, ptr)? {
            Node::Leaf { path, value } => {
                let full = [prefix.as_slice(), &path].concat();
                out.push((key(&full)?, value));
            }
            Node::Extension { path, child } => {
                let len = prefix.len();
                prefix.extend_from_slice(&path);
                visit(source, child, prefix, out, root)?;
                prefix.truncate(len);
            }
            Node::Branch { children, value } => {
                if let Some(value) = value {
                    out.push((key(prefix)?, value));
                }
                for (i, child) in children.into_iter().enumerate() {
                    if let Some(child) = child {
                        prefix.push(i as u8);
                        visit(source, child, prefix, out, root)?;
                        prefix.pop();
                    }
                }
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    if root != EMPTY_ROOT {
        visit(source, Ptr::Hash(root), &mut Vec::new(), &mut out, root)?;
    }
    Ok(out)
}

/// Adds to `marked` every stored (hashed) node of the trie under `root`, walking below a
/// node only when it was not marked yet: tries that share subtrees — successive states of
/// one chain — cost only the nodes in which they differ. `on_value` sees every value the walk
/// reaches (in a shared subtree already walked it is not called again: those values were
/// seen then). A node that is not in `source` is an error; what was marked stays marked.
pub fn mark<S: NodeSource>(
    source: &S,
    root: B256,
    marked: &mut std::collections::HashSet<B256>,
    on_value: &mut dyn FnMut(&[u8]),
) -> Result<(), TrieError> {
    fn visit<S: NodeSource>(
        source: &S,
        ptr: Ptr,
        marked: &mut std::collections::HashSet<B256>,
        on_value: &mut dyn FnMut(&[u8]),
    ) -> Result<(), TrieError> {
        let node = match ptr {
            Ptr::Hash(hash) => {
                if marked.contains(&hash) {
                    return Ok(());
                }
                let node = decode_node(&load_raw(source, hash)?, hash)?;
                marked.insert(hash);
                node
            }
            Ptr::Node(node) => *node,
        };
        match node {
            Node::Leaf { value, .. } => on_value(&value),
            Node::Extension { child, .. } => visit(source, child, marked, on_value)?,
            Node::Branch { children, value } => {
                if let Some(value) = value {
                    on_value(&value);
                }
                for child in children.into_iter().flatten() {
                    visit(source, child, marked, on_value)?;
                }
            }
        }
        Ok(())
    }
    if root == EMPTY_ROOT {
        return Ok(());
    }
    visit(source, Ptr::Hash(root), marked, on_value)
}

/// Applies a batch of `(key, value)` changes (empty value = removal) to the trie under `root`
/// and commits, working on the sixteen subtries below the root in parallel when the batch is
/// large. Returns the same root and nodes as applying the changes one by one to a
/// [`TrieUpdate`].
pub fn update_parallel<S: NodeSource + Sync>(
    source: &S,
    root: B256,
    changes: &[(Vec<u8>, Vec<u8>)],
) -> Result<(B256, Nodes), TrieError> {
    use rayon::prelude::*;

    let serial = || -> Result<(B256, Nodes), TrieError> {
        let mut update = TrieUpdate::new(source, root);
        for (key, value) in changes {
            update.insert(key, value.clone())?;
        }
        Ok(update.commit())
    };
    if changes.len() < 64 || root == EMPTY_ROOT || changes.iter().any(|(k, _)| k.is_empty()) {
        return serial();
    }
    let Node::Branch {
        mut children,
        value,
    } = load(source, Ptr::Hash(root))?
    else {
        return serial();
    };
    let mut groups: [Vec<(Vec<u8>, &Vec<u8>)>; 16] = Default::default();
    for (key, value) in changes {
        let path = to_nibbles(key);
        groups[usize::from(path[0])].push((path, value));
    }
    let slots: Vec<Option<Ptr>> = children.iter_mut().map(Option::take).collect();
    // Apply and commit each subtrie on its own thread.
    let results: Vec<Result<(Option<ChildRef>, Nodes), TrieError>> = slots
        .into_par_iter()
        .zip(groups.into_par_iter())
        .map(|(mut slot, group)| {
            for (path, value) in group {
                if value.is_empty() {
                    remove(source, &mut slot, &path[1..])?;
                } else {
                    slot = Some(insert(source, slot, &path[1..], value.clone())?);
                }
            }
            let mut nodes = Vec::new();
            let child = slot.map(|p| commit_ptr(p, &mut |h, n| nodes.push((h, n))));
            Ok((child, nodes))
        })
        .collect();
    let mut nodes = Vec::new();
    for (i, result) in results.into_iter().enumerate() {
        let (child, mut new_nodes) = result?;
        nodes.append(&mut new_nodes);
        children[i] = match child {
            None => None,
            Some(ChildRef::Hash(h)) => Some(Ptr::Hash(h)),
            Some(ChildRef::Inline(raw)) => Some(Ptr::Node(Box::new(decode_node(&raw, root)?))),
        };
    }
    // The root branch itself (collapsing it if removals left one entry).
    let new_root = match normalize_branch(source, children, value)? {
        None => EMPTY_ROOT,
        Some(Ptr::Hash(h)) => h,
        Some(Ptr::Node(node)) => {
            let encoded = encode(*node, &mut |h, n| nodes.push((h, n)));
            let hash = keccak256(&encoded);
            nodes.push((hash, encoded));
            hash
        }
    };
    Ok((new_root, nodes))
}
