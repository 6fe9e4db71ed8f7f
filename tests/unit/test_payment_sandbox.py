"""The payment sandbox `make run` starts when no provider is named: the provider API the payments worker calls, paying
each Idempotency-Key once."""

from litestar.testing import AsyncTestClient

from services.payments.sandbox import PaymentSandbox, create_app


async def test_it_pays_a_key_once_and_answers_that_key_again_with_the_same_payment():
    sandbox = PaymentSandbox()
    async with AsyncTestClient(create_app(sandbox)) as client:
        order = {"amount": 120.5, "reference": "exp-1", "payee": "ann"}
        first = await client.post("/payments", json=order, headers={"Idempotency-Key": "exp-1:pay:1"})
        again = await client.post("/payments", json=order, headers={"Idempotency-Key": "exp-1:pay:1"})
        other = await client.post("/payments", json=order, headers={"Idempotency-Key": "exp-2:pay:1"})
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 201)
    assert first.json()["amount"] == 120.5 and first.json()["id"].startswith("pay_")
    assert again.json() == first.json()
    assert other.json()["id"] != first.json()["id"]
    assert len(sandbox.payments) == 2


async def test_an_order_without_a_key_or_an_amount_is_refused_with_the_reason():
    async with AsyncTestClient(create_app(PaymentSandbox())) as client:
        no_key = await client.post("/payments", json={"amount": 1})
        assert no_key.status_code == 400 and "Idempotency-Key" in no_key.json()["error"]
        for order in ({}, {"amount": "ten"}, {"amount": -1}, {"amount": True}, [1]):
            refused = await client.post("/payments", json=order, headers={"Idempotency-Key": "k"})
            assert refused.status_code == 422 and "amount" in refused.json()["error"], order
        not_json = await client.post("/payments", content=b"{", headers={"Idempotency-Key": "k"})
        assert not_json.status_code == 422
