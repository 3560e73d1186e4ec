"""The gateway simulator as its own process: ``uvicorn --factory bench.simulator_app:app``.

Reads the same settings Tuition does, so both sides agree on the merchant and the key:
``TUITION_SANDBOX_APP_ID``, ``TUITION_SANDBOX_SECRET``, ``TUITION_SIMULATOR_KEY_FILE``
(the RSA key the simulator signs notifications with) and ``BENCH_SIMULATOR_URL`` (its
own public address, used in the buyer links it hands out).
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.types import ASGIApp

from tuition.simulator.app import create_simulator
from tuition.simulator.config import SimulatorConfig


def app() -> ASGIApp:
    config = SimulatorConfig(
        merchants={
            os.environ.get("TUITION_SANDBOX_APP_ID", "sandbox_app"): os.environ.get(
                "TUITION_SANDBOX_SECRET", "sandbox_secret"
            )
        },
        public_base_url=os.environ.get("BENCH_SIMULATOR_URL", "http://127.0.0.1:8301"),
        private_key_pem_path=Path(os.environ["TUITION_SIMULATOR_KEY_FILE"]),
        # The flow bench never asks the simulator to send notifications (the load
        # generator signs them with this same key), so its control API stays off;
        # bench.recovery turns it on to pay attempts whose notification is then lost.
        control_enabled=os.environ.get("BENCH_SIMULATOR_CONTROL") == "1",
    )
    return create_simulator(config).app
