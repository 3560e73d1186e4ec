"""An offline payment gateway for the demo and the tests (see :mod:`tuition.simulator.app`)."""

from __future__ import annotations

from tuition.simulator.app import Simulator, create_simulator
from tuition.simulator.config import SimulatorConfig
from tuition.simulator.faults import FaultKind, Operation
from tuition.simulator.notifier import DeliveryAttempt
from tuition.simulator.records import (
    GatewayError,
    PaymentWireStatus,
    RefundWireStatus,
    SimPayment,
    SimRefund,
)

__all__ = [
    "DeliveryAttempt",
    "FaultKind",
    "GatewayError",
    "Operation",
    "PaymentWireStatus",
    "RefundWireStatus",
    "SimPayment",
    "SimRefund",
    "Simulator",
    "SimulatorConfig",
    "create_simulator",
]
