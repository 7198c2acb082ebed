"""The devnet against a real Ethereum client library (web3.py, not written here).

Usage: test_devnet.py RPC_URL TOKEN_ABI TOKEN_BIN DEV_KEY [LIGHT_RPC_URL]

Deploys the ERC-20 in Token.sol (compiled by solc), transfers tokens and ETH, and checks
balances, nonces and receipts (status, gas, logs, contract address), event queries
(eth_getLogs), filters, full blocks and fee history through web3.py, subscriptions over a
WebSocket (newHeads, logs); with LIGHT_RPC_URL, reads the same
balances, token balance (eth_call) and code through the devnet's light client, which answers
only what it verified against the state roots it believes.
Exits non-zero with a message on the first failure.
"""

import asyncio
import json
import sys
import time

from web3 import AsyncWeb3, Web3, WebSocketProvider


def main() -> None:
    url, abi_path, bin_path, key = sys.argv[1:5]
    light_url = sys.argv[5] if len(sys.argv) > 5 else None
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))
    deadline = time.time() + 60
    while not w3.is_connected():
        if time.time() > deadline:
            sys.exit(f"no JSON-RPC at {url}")
        time.sleep(0.5)
    assert w3.eth.chain_id == 7331, w3.eth.chain_id
    account = w3.eth.account.from_key(key)
    me = account.address
    start_nonce = w3.eth.get_transaction_count(me)
    start_balance = w3.eth.get_balance(me)
    assert start_balance > 10**21, start_balance

    def send(tx: dict) -> dict:
        tx.setdefault("chainId", 7331)
        tx.setdefault("nonce", w3.eth.get_transaction_count(me, "pending"))
        signed = account.sign_transaction(tx)
        tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=180, poll_latency=0.5)
        assert receipt["transactionHash"] == tx_hash, receipt
        return receipt

    abi = json.load(open(abi_path))
    bytecode = "0x" + open(bin_path).read().strip()
    Token = w3.eth.contract(abi=abi, bytecode=bytecode)
    supply = 1_000_000 * 10**18
    deploy = Token.constructor("Phalanx Test", "PHX", supply).build_transaction({"from": me})
    receipt = send(deploy)
    assert receipt["status"] == 1, receipt
    address = receipt["contractAddress"]
    assert address, receipt
    assert len(w3.eth.get_code(address)) > 0
    token = w3.eth.contract(address=address, abi=abi)
    assert token.functions.symbol().call() == "PHX"
    assert token.functions.balanceOf(me).call() == supply
    print(f"deployed Token at {address} in block {receipt['blockNumber']}, gas {receipt['gasUsed']}")

    friend = w3.eth.account.create().address
    amount = 12_345 * 10**18
    receipt = send(token.functions.transfer(friend, amount).build_transaction({"from": me}))
    assert receipt["status"] == 1, receipt
    events = token.events.Transfer().process_receipt(receipt)
    assert len(events) == 1 and events[0]["args"]["to"] == friend, events
    assert events[0]["args"]["value"] == amount
    assert token.functions.balanceOf(friend).call() == amount
    assert token.functions.balanceOf(me).call() == supply - amount
    print(f"token transfer in block {receipt['blockNumber']}, gas {receipt['gasUsed']}")

    # The same event through eth_getLogs (web3.py's stateless event query): the deployment's
    # mint and this transfer, and only this transfer when filtered by recipient.
    transfer_block = receipt["blockNumber"]
    logs = token.events.Transfer().get_logs(from_block=1, to_block=transfer_block)
    assert [l["args"]["value"] for l in logs] == [supply, amount], logs
    to_friend = token.events.Transfer().get_logs(
        argument_filters={"to": friend}, from_block=1, to_block=transfer_block)
    assert len(to_friend) == 1 and to_friend[0]["transactionHash"] == receipt["transactionHash"], to_friend
    assert to_friend[0]["logIndex"] == receipt["logs"][0]["logIndex"], to_friend
    block = w3.eth.get_block(transfer_block, full_transactions=True)
    assert block["gasUsed"] >= receipt["gasUsed"], block
    assert any(t["hash"] == receipt["transactionHash"] for t in block["transactions"]), block
    assert w3.eth.get_block(block["hash"])["number"] == transfer_block
    history = w3.eth.fee_history(2, transfer_block, [25, 75])
    assert len(history["baseFeePerGas"]) == 3 and history["gasUsedRatio"][-1] > 0, history
    assert len(history["reward"]) == 2 and history["reward"][-1][1] >= history["reward"][-1][0], history
    print(f"eth_getLogs, full blocks and eth_feeHistory through web3.py: ok ({len(logs)} Transfer events)")

    # Filters (eth_newFilter / eth_getFilterLogs / eth_newBlockFilter / eth_getFilterChanges).
    event_filter = token.events.Transfer.create_filter(from_block=1)
    entries = event_filter.get_all_entries()
    assert [e["args"]["value"] for e in entries] == [supply, amount], entries
    block_filter = w3.eth.filter("latest")

    # A transfer the token refuses: the estimate reverts, naming the reason.
    try:
        token.functions.transfer(friend, supply * 2).estimate_gas({"from": me})
        sys.exit("an over-balance transfer was not refused")
    except Exception as e:  # web3 raises ContractLogicError
        assert "balance" in str(e), e

    value = w3.to_wei(1.5, "ether")
    receipt = send({"to": friend, "value": value, "gas": 21_000,
                    "maxFeePerGas": w3.to_wei(3, "gwei"),
                    "maxPriorityFeePerGas": w3.to_wei(1, "gwei")})
    assert receipt["status"] == 1 and receipt["gasUsed"] == 21_000, receipt
    assert w3.eth.get_balance(friend) == value
    new_blocks = block_filter.get_new_entries()
    assert receipt["blockHash"] in new_blocks, new_blocks
    assert event_filter.get_new_entries() == [], "no new Transfer event"
    assert w3.eth.uninstall_filter(block_filter.filter_id)
    assert w3.eth.uninstall_filter(event_filter.filter_id)
    print(f"filters: {len(new_blocks)} new blocks reported, the event filter quiet")
    assert w3.eth.get_transaction_count(me) == start_nonce + 3
    assert w3.eth.get_balance(me) < start_balance - value
    tx = w3.eth.get_transaction(receipt["transactionHash"])
    assert tx["from"] == me and tx["to"] == friend and tx["value"] == value, tx
    print("ETH transfer, balances, nonces and receipts: ok")

    # eth_getProof (EIP-1186) through web3.py: the friend's balance and the token's storage
    # root as proven; the head may move between calls, so ask at the block just read.
    for _ in range(10):
        block = w3.eth.get_block("latest")
        try:
            proof = w3.eth.get_proof(friend, [], block["number"])
            token_proof = w3.eth.get_proof(address, [0], block["number"])
        except Exception:  # the head moved on: "state at block N is not kept"
            continue
        assert proof["balance"] == value, proof
        assert len(proof["accountProof"]) > 0
        assert token_proof["storageHash"] != b"\x00" * 32
        assert len(token_proof["storageProof"]) == 1
        print(f"eth_getProof at block {block['number']}: {len(proof['accountProof'])} account-proof nodes")
        break
    else:
        raise AssertionError("eth_getProof never answered at the head")

    # Subscriptions over a WebSocket on the same address (web3.py's WebSocketProvider): the
    # token's Transfer events and new heads, then a transfer sent over HTTP arrives on both.
    other = w3.eth.account.create().address
    ws_url = url.replace("http://", "ws://", 1)

    async def subscribed() -> None:
        async with AsyncWeb3(WebSocketProvider(ws_url)) as aw3:
            assert await aw3.eth.chain_id == 7331
            transfers = aw3.eth.contract(address=address, abi=abi).events.Transfer()
            topic = Web3.to_hex(Web3.keccak(text="Transfer(address,address,uint256)"))
            logs_sub = await aw3.eth.subscribe("logs", {"address": address, "topics": [topic]})
            heads_sub = await aw3.eth.subscribe("newHeads")
            tx = token.functions.transfer(other, 7).build_transaction(
                {"from": me, "nonce": w3.eth.get_transaction_count(me, "pending"), "chainId": 7331})
            sent = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
            seen_log, heads = None, []
            async for message in aw3.socket.process_subscriptions():
                if message["subscription"] == heads_sub:
                    heads.append(message["result"])
                elif message["subscription"] == logs_sub:
                    assert message["result"]["transactionHash"] == sent, message
                    seen_log = transfers.process_log(message["result"])
                if seen_log and any(h["hash"] == seen_log["blockHash"] for h in heads):
                    break
            assert seen_log["args"]["to"] == other and seen_log["args"]["value"] == 7, seen_log
            numbers = [h["number"] for h in heads]
            assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers
            assert await aw3.eth.unsubscribe(logs_sub) and await aw3.eth.unsubscribe(heads_sub)
            print(f"WebSocket: Transfer event and {len(heads)} new heads up to block {seen_log['blockNumber']}")

    asyncio.run(asyncio.wait_for(subscribed(), timeout=180))
    assert token.functions.balanceOf(other).call() == 7

    if light_url:
        # The light client's verified JSON-RPC: once it is past the ETH transfer, it answers
        # the same balance, token balance and code as the node, each checked by proofs.
        light = Web3(Web3.HTTPProvider(light_url, request_kwargs={"timeout": 30}))
        deadline = time.time() + 90
        while light.eth.block_number < receipt["blockNumber"]:
            if time.time() > deadline:
                sys.exit(f"the light client never reached block {receipt['blockNumber']}")
            time.sleep(0.5)
        at = light.eth.block_number
        assert light.eth.get_balance(friend, at) == value
        light_token = light.eth.contract(address=address, abi=abi)
        assert light_token.functions.balanceOf(friend).call(block_identifier=at) == amount
        assert light.eth.get_code(address, at) == w3.eth.get_code(address)
        try:
            light.eth.send_raw_transaction(b"\x01")
            sys.exit("the light client accepted a transaction")
        except Exception as e:  # -32601: it answers only what it can verify
            assert "not served" in str(e), e
        print(f"light client at block {at}: balance, token balance (eth_call) and code verified")


if __name__ == "__main__":
    main()
