//! Ethereum JSON-RPC conventions shared by every phalanx endpoint that speaks it (the full
//! node's and the light client's): the request envelope (single and batch), error codes as
//! geth uses them, hex quantities, block tags, the call object of `eth_call` and
//! `eth_estimateGas`, and how a call's outcome becomes a result or a geth-style error.
//!
//! Error codes: -32700 parse, -32600 invalid request, -32601 unknown method, -32602 bad
//! params, -32000 server (anything the node cannot answer, with a message saying why), 3 a
//! reverted call (with the revert data).
//!
//! [`HeadState`] answers the state reads every phalanx full node serves alike (the devnet's
//! endpoint and each `phalanx node` server's), from one state store at its executed head.

use alloy_primitives::{Address, B256, Bytes, U256};
use serde_json::{Value, json};

use crate::call::{CallError, CallOutcome, CallRequest};
use crate::evm::ExecEnv;
use crate::reader::StateReader;
use crate::store::{Head, StateStore, StateView};

/// A JSON-RPC error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    /// Code.
    pub code: i64,
    /// Message.
    pub message: String,
    /// Data (a revert's return data).
    pub data: Option<Value>,
}

impl RpcError {
    /// -32602: the parameters are wrong.
    pub fn params(message: impl Into<String>) -> Self {
        Self {
            code: -32602,
            message: message.into(),
            data: None,
        }
    }

    /// -32000: the node cannot answer.
    pub fn server(message: impl Into<String>) -> Self {
        Self {
            code: -32000,
            message: message.into(),
            data: None,
        }
    }

    /// -32601: the method is not served here.
    pub fn unknown_method(message: impl Into<String>) -> Self {
        Self {
            code: -32601,
            message: message.into(),
            data: None,
        }
    }

    /// The error object of a response with this id.
    pub fn response(&self, id: Value) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(data) = &self.data {
            error["data"] = data.clone();
        }
        json!({"jsonrpc": "2.0", "id": id, "error": error})
    }
}

/// Answers a request body (one request or a batch) with `call(method, params)` for each.
pub fn dispatch(body: &str, call: impl Fn(&str, &[Value]) -> Result<Value, RpcError>) -> Value {
    let request: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => {
            return RpcError {
                code: -32700,
                message: format!("parse error: {e}"),
                data: None,
            }
            .response(Value::Null);
        }
    };
    match request {
        Value::Array(batch) if !batch.is_empty() => {
            Value::Array(batch.iter().map(|r| one(r, &call)).collect())
        }
        other => one(&other, &call),
    }
}

/// [`dispatch`] on tokio's blocking pool (reads touch the disk), as an HTTP handler answers: a
/// handler that panics answers -32000 "internal error" instead of dropping the connection.
pub async fn dispatch_blocking(
    body: String,
    call: impl Fn(&str, &[Value]) -> Result<Value, RpcError> + Send + 'static,
) -> Value {
    tokio::task::spawn_blocking(move || dispatch(&body, call))
        .await
        .unwrap_or_else(|e| RpcError::server(format!("internal error: {e}")).response(Value::Null))
}

fn one(request: &Value, call: &impl Fn(&str, &[Value]) -> Result<Value, RpcError>) -> Value {
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = request.get("method").and_then(Value::as_str) else {
        return RpcError {
            code: -32600,
            message: "invalid request: no method".into(),
            data: None,
        }
        .response(id);
    };
    let params = request
        .get("params")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    match call(method, &params) {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(e) => {
            tracing::debug!(method, code = e.code, error = %e.message, "json-rpc error");
            e.response(id)
        }
    }
}

/// A hex quantity (`0x` and no leading zeros).
pub fn quantity(v: impl std::fmt::LowerHex) -> Value {
    Value::String(format!("{v:#x}"))
}

/// A block tag or number (`what` names it in errors) against the endpoint's `head`: absent
/// or `null`, `latest`, `safe`, `finalized` and `pending` are the head (execution follows
/// finality), `earliest` is 0; a hex quantity or a JSON number is itself.
pub fn block_number(v: Option<&Value>, head: u64, what: &str) -> Result<u64, RpcError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(head);
    };
    if let Some(n) = v.as_u64() {
        return Ok(n);
    }
    match v.as_str() {
        Some("latest" | "safe" | "finalized" | "pending") => Ok(head),
        Some("earliest") => Ok(0),
        Some(s) => s
            .strip_prefix("0x")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .ok_or_else(|| RpcError::params(format!("{what}: {s:?} is not a tag or hex number"))),
        None => Err(RpcError::params(format!(
            "{what}: expected a tag or hex number"
        ))),
    }
}

/// Parameter `i`, decoded, or a -32602 naming it.
pub fn param<T: serde::de::DeserializeOwned>(
    params: &[Value],
    i: usize,
    what: &str,
) -> Result<T, RpcError> {
    let v = params
        .get(i)
        .ok_or_else(|| RpcError::params(format!("missing parameter {i} ({what})")))?;
    serde_json::from_value(v.clone())
        .map_err(|e| RpcError::params(format!("parameter {i} ({what}): {e}")))
}

/// A block parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockTag {
    /// `latest`, `safe`, `finalized` or `pending` (absent too): execution follows finality,
    /// so all name the executed head.
    Head,
    /// `earliest`.
    Earliest,
    /// A hex block number.
    Number(u64),
}

/// Parameter `i` as a block tag (absent: the head). Block hashes are refused.
pub fn block_tag(params: &[Value], i: usize) -> Result<BlockTag, RpcError> {
    let Some(tag) = params.get(i) else {
        return Ok(BlockTag::Head);
    };
    match tag.as_str() {
        Some("latest" | "safe" | "finalized" | "pending") => Ok(BlockTag::Head),
        Some("earliest") => Ok(BlockTag::Earliest),
        Some(s) => s
            .strip_prefix("0x")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .map(BlockTag::Number)
            .ok_or_else(|| RpcError::params(format!("block tag {s:?} is not a tag or hex number"))),
        None => Err(RpcError::params(
            "block tag: expected a string (block hashes are not supported)",
        )),
    }
}

/// Storage keys as geth takes them: hex of up to 32 bytes, left-padded.
pub fn storage_key(k: &str) -> Result<U256, RpcError> {
    let digits = k.strip_prefix("0x").unwrap_or(k);
    (digits.len() <= 64)
        .then(|| U256::from_str_radix(if digits.is_empty() { "0" } else { digits }, 16).ok())
        .flatten()
        .ok_or_else(|| RpcError::params(format!("storage key {k:?} is not 32-byte hex")))
}

/// The methods [`HeadState::call`] answers.
pub const STATE_METHODS: [&str; 5] = [
    "eth_getBalance",
    "eth_getTransactionCount",
    "eth_getCode",
    "eth_getStorageAt",
    "eth_getProof",
];

/// A node's state as its reads see it: the store and its executed head. Reads of accounts,
/// code and storage are answered at the head only (the store keeps the head's flat state);
/// `eth_getProof` at any finalized block (the trie keeps every root's nodes: what a light
/// client verifies against the root it believes).
pub struct HeadState<'a> {
    /// The state.
    pub store: &'a StateStore,
    /// Its executed head.
    pub head: Head,
    /// The nonce a `pending` `eth_getTransactionCount` reports, from the head's nonce (a
    /// node with a transaction pool counts what it holds); `None`: the head's nonce.
    pub pending_nonce: Option<&'a dyn Fn(Address, u64) -> u64>,
}

impl HeadState<'_> {
    /// Checks the block parameter `i` names the head.
    pub fn at_head(&self, params: &[Value], i: usize) -> Result<(), RpcError> {
        let head = self.head.number;
        match block_tag(params, i)? {
            BlockTag::Head => Ok(()),
            BlockTag::Number(n) if n == head => Ok(()),
            BlockTag::Number(n) => Err(RpcError::server(format!(
                "state at block {n} is not kept: this node keeps the executed head ({head})"
            ))),
            BlockTag::Earliest => Err(RpcError::server(format!(
                "state at block 0 is not kept: this node keeps the executed head ({head})"
            ))),
        }
    }

    /// The state after the head.
    pub fn view(&self) -> Result<StateView, RpcError> {
        self.store
            .view(self.head.block)
            .map_err(|e| RpcError::server(e.to_string()))
    }

    /// Answers one of [`STATE_METHODS`] (another method is -32601).
    pub fn call(&self, method: &str, params: &[Value]) -> Result<Value, RpcError> {
        let failed = |e: crate::StateError| RpcError::server(e.to_string());
        match method {
            "eth_getBalance" | "eth_getTransactionCount" | "eth_getCode" => {
                let address: Address = param(params, 0, "address")?;
                self.at_head(params, 1)?;
                let view = self.view()?;
                let account = view.account(address).map_err(failed)?;
                match method {
                    "eth_getBalance" => Ok(quantity(account.map_or(U256::ZERO, |a| a.balance))),
                    "eth_getTransactionCount" => {
                        let nonce = account.map_or(0, |a| a.nonce);
                        let pending = params.get(1).and_then(Value::as_str) == Some("pending");
                        Ok(quantity(match self.pending_nonce {
                            Some(count) if pending => count(address, nonce),
                            _ => nonce,
                        }))
                    }
                    _ => {
                        let code = match account {
                            Some(a) => view.code(a.code_hash).map_err(failed)?,
                            None => Bytes::new(),
                        };
                        Ok(json!(code))
                    }
                }
            }
            "eth_getStorageAt" => {
                let address: Address = param(params, 0, "address")?;
                let slot: U256 = param(params, 1, "slot")?;
                self.at_head(params, 2)?;
                let value = self.view()?.storage(address, slot).map_err(failed)?;
                Ok(json!(B256::from(value)))
            }
            "eth_getProof" => self.proof(params),
            other => Err(RpcError::unknown_method(format!(
                "method {other} is not a state read"
            ))),
        }
    }

    /// EIP-1186 `eth_getProof` at any finalized block up to the head.
    fn proof(&self, params: &[Value]) -> Result<Value, RpcError> {
        let failed = |e: crate::StateError| RpcError::server(e.to_string());
        let address: Address = param(params, 0, "address")?;
        let raw: Vec<String> = param(params, 1, "storage keys")?;
        if raw.len() > 1024 {
            return Err(RpcError::params("at most 1024 storage keys".to_string()));
        }
        let slots = raw
            .iter()
            .map(|k| storage_key(k))
            .collect::<Result<Vec<U256>, RpcError>>()?;
        let head = self.head.number;
        let at = |n: u64| {
            self.store
                .finalized_block(n)
                .map_err(failed)?
                .ok_or_else(|| RpcError::server(format!("block {n} is not known")))
        };
        let block = match block_tag(params, 2)? {
            BlockTag::Head => self.head.block,
            BlockTag::Number(n) if n == head => self.head.block,
            BlockTag::Number(n) if n > head => {
                return Err(RpcError::server(format!(
                    "block {n} is not executed yet (head {head})"
                )));
            }
            BlockTag::Number(n) => at(n)?,
            BlockTag::Earliest => at(0)?,
        };
        let proof = self.store.proof(block, address, &slots).map_err(failed)?;
        // Keys echoed as given, as geth does.
        let storage: Vec<Value> = raw
            .iter()
            .zip(&proof.storage)
            .map(|(key, (_, value, nodes))| {
                json!({"key": key, "value": quantity(*value), "proof": nodes})
            })
            .collect();
        let account = proof.account;
        Ok(json!({
            "address": address,
            "accountProof": proof.account_proof,
            "balance": quantity(account.map_or(U256::ZERO, |a| a.balance)),
            "codeHash": account.map_or(B256::ZERO, |a| a.code_hash),
            "nonce": quantity(account.map_or(0, |a| a.nonce)),
            "storageHash": account.map_or(phalanx_trie::EMPTY_ROOT, |a| a.storage_root),
            "storageProof": storage,
        }))
    }
}

/// The JSON-RPC transaction object of `eth_call` and `eth_estimateGas` (fee fields are
/// accepted and ignored: calls run at a zero gas price).
#[derive(Debug, serde::Deserialize)]
pub struct CallObject {
    from: Option<Address>,
    to: Option<Address>,
    value: Option<U256>,
    data: Option<Bytes>,
    input: Option<Bytes>,
    gas: Option<alloy_primitives::U64>,
}

impl CallObject {
    /// The call it asks for.
    pub fn request(self) -> CallRequest {
        CallRequest {
            from: self.from,
            to: self.to,
            value: self.value.unwrap_or_default(),
            data: self.input.or(self.data).unwrap_or_default(),
            gas: self.gas.map(|g| g.to::<u64>()),
        }
    }
}

/// Runs `eth_call` or, for `eth_estimateGas`, the gas estimate of `request` over `state` in
/// `env`: the answer (or the error geth gives for a call that fails, as
/// [`outcome_result`]); `Err` when the state could not be read.
pub fn run_call<R: StateReader>(
    state: &R,
    env: &ExecEnv,
    method: &str,
    request: &CallRequest,
) -> Result<Result<Value, RpcError>, CallError> {
    if method == "eth_call" {
        crate::call::call(state, env, request).map(outcome_result)
    } else {
        crate::call::estimate_gas(state, env, request).map(|r| match r {
            Ok(gas) => Ok(quantity(gas)),
            Err(failed) => outcome_result(failed).map(|_| Value::Null),
        })
    }
}

/// A call's result, or the error geth gives: code 3 with the revert data, or the halt reason.
pub fn outcome_result(outcome: CallOutcome) -> Result<Value, RpcError> {
    match outcome {
        CallOutcome::Success { output, .. } => Ok(json!(output)),
        CallOutcome::Revert { output, .. } => Err(RpcError {
            code: 3,
            message: match revert_reason(&output) {
                Some(reason) => format!("execution reverted: {reason}"),
                None => "execution reverted".into(),
            },
            data: Some(json!(output)),
        }),
        CallOutcome::Halt { reason, .. } => {
            Err(RpcError::server(format!("execution halted: {reason}")))
        }
    }
}

/// The reason string of Solidity's `Error(string)` revert data, if that is what it is.
pub fn revert_reason(output: &[u8]) -> Option<String> {
    let body = output.strip_prefix(&[0x08, 0xc3, 0x79, 0xa0][..])?;
    let word = |i: usize| -> Option<usize> {
        let w = body.get(i..i + 32)?;
        if w[..24].iter().any(|b| *b != 0) {
            return None;
        }
        usize::try_from(u64::from_be_bytes(w[24..].try_into().ok()?)).ok()
    };
    let offset = word(0)?;
    let len = word(offset)?;
    let start = offset.checked_add(32)?;
    let bytes = body.get(start..start.checked_add(len)?)?;
    String::from_utf8(bytes.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_single_and_errors() {
        let call = |m: &str, p: &[Value]| match m {
            "echo" => Ok(p.first().cloned().unwrap_or(Value::Null)),
            _ => Err(RpcError::unknown_method(format!("no {m}"))),
        };
        let one = dispatch(r#"{"id":7,"method":"echo","params":[1]}"#, call);
        assert_eq!(one["result"], json!(1));
        assert_eq!(one["id"], json!(7));
        let batch = dispatch(
            r#"[{"id":1,"method":"echo","params":["a"]},{"id":2,"method":"x"}]"#,
            call,
        );
        assert_eq!(batch[0]["result"], json!("a"));
        assert_eq!(batch[1]["error"]["code"], json!(-32601));
        assert_eq!(dispatch("{", call)["error"]["code"], json!(-32700));
        assert_eq!(
            dispatch(r#"{"id":1}"#, call)["error"]["code"],
            json!(-32600)
        );
    }

    #[test]
    fn tags_and_keys() {
        assert_eq!(block_tag(&[], 0), Ok(BlockTag::Head));
        assert_eq!(block_tag(&[json!("safe")], 0), Ok(BlockTag::Head));
        assert_eq!(block_tag(&[json!("0x1f")], 0), Ok(BlockTag::Number(31)));
        assert_eq!(
            block_tag(&[json!("0xzz")], 0).map_err(|e| e.code),
            Err(-32602)
        );
        assert_eq!(
            block_tag(&[json!({"blockHash": "0x00"})], 0).map_err(|e| e.code),
            Err(-32602)
        );
        assert_eq!(storage_key("0x1"), Ok(U256::from(1)));
        assert_eq!(storage_key("0x"), Ok(U256::ZERO));
        assert!(storage_key(&format!("0x{}", "1".repeat(65))).is_err());
        assert!(storage_key("0xgg").is_err());
    }

    #[test]
    fn revert_reason_decodes_error_string() {
        let mut data = vec![0x08, 0xc3, 0x79, 0xa0];
        let mut word = [0u8; 32];
        word[31] = 32;
        data.extend_from_slice(&word);
        word[31] = 2;
        data.extend_from_slice(&word);
        let mut text = [0u8; 32];
        text[..2].copy_from_slice(b"no");
        data.extend_from_slice(&text);
        assert_eq!(revert_reason(&data).as_deref(), Some("no"));
        assert_eq!(revert_reason(&data[..40]), None);
    }
}
