from smsmenu.clock import FakeClock
from smsmenu.ledger.api import Billing, Kind, RechargeRequest, RechargeStatus
from smsmenu.ledger.service import LedgerService
from tests.ledger_fixtures import TRADE_PIN, new_agent


async def test_recharge_moves_money(ledger: LedgerService, clock: FakeClock) -> None:
    agent = await new_agent(ledger)
    await ledger.add_subscriber("13900000002", Kind.MOBILE, Billing.PREPAID, 500)
    view = await ledger.recharge(
        RechargeRequest(agent.agent_id, Kind.MOBILE, "13900000002", 10000, TRADE_PIN, "k1")
    )
    assert view.status is RechargeStatus.SUCCEEDED
    assert (view.commission_fen, view.debit_fen, view.float_after_fen) == (200, 9800, 90200)
    sub = await ledger.subscriber("13900000002")
    assert sub is not None and sub.balance_fen == 10500
