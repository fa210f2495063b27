"""The sandbox's whole world, in memory behind one lock: LionDesk records and tokens,
v1 activities, Real Geeks leads, fault knobs, the webhook destination and the call log."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Callable, Iterator

from flask import current_app

from bridge.defaults import SANDBOX_CALL_LOG_SIZE
from bridge.sandbox.calls import CallLog
from bridge.sandbox.faults import FaultBoard
from bridge.sandbox.seeds import seed_reference_data
from bridge.sandbox.tokens import TokenStore
from bridge.sandbox.webhooks import Deliverer

V1_API_KEY = "sandbox-v1-key"
V1_USER_KEY = "sandbox-v1-user"
V1_PERSONAL_API_KEY = "user"
"""The v1 "Personal" partner's API key: works like any other except for GetUsers."""
REALGEEKS_USERNAME = "sandbox"
REALGEEKS_PASSWORD = "sandbox"


def liondesk_time(moment: float) -> str:
    """A LionDesk timestamp: whole seconds, as its MySQL DATETIME columns store them."""
    return datetime.fromtimestamp(int(moment), timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def realgeeks_time(moment: float) -> str:
    """A Real Geeks timestamp: UTC with microseconds and Z."""
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Table:
    """Records of one kind by id, in creation order; ids are integers, or strings like
    LionDesk's address ids."""

    def __init__(self, string_ids: bool = False):
        self.string_ids = string_ids
        self.rows: dict = {}
        self._next_id = 1

    def insert(self, record: dict) -> dict:
        """Store a copy of `record` under the next id and return it."""
        key = str(self._next_id) if self.string_ids else self._next_id
        self._next_id += 1
        stored = {"id": key, **{k: v for k, v in record.items() if k != "id"}}
        self.rows[key] = stored
        return stored

    def get(self, key) -> dict | None:
        """The record with id `key` (given as int or digit string), or None."""
        try:
            return self.rows.get(str(key) if self.string_ids else int(key))
        except (TypeError, ValueError):
            return None

    def remove(self, key) -> dict | None:
        """Delete and return the record with id `key`, if any."""
        record = self.get(key)
        if record is not None:
            del self.rows[record["id"]]
        return record

    def __iter__(self) -> Iterator[dict]:
        return iter(list(self.rows.values()))

    def __len__(self) -> int:
        return len(self.rows)


class SandboxState:
    """Everything the simulated services know; mutate only while holding `lock`."""

    def __init__(self, clock: Callable[[], float] = time.time, call_log_size: int = SANDBOX_CALL_LOG_SIZE):
        self.lock = threading.RLock()
        self.clock = clock
        self.calls = CallLog(call_log_size)
        self.faults = FaultBoard()
        self.deliverer = Deliverer()
        self.latency_ms = 0.0
        self.reset()

    def reset(self) -> None:
        """Back to a fresh sandbox: reference data only, no faults, no destination."""

        with self.lock:
            self.faults.clear()
            self.deliverer.reset()
            self.tokens = TokenStore(self.clock)
            # LionDesk v2
            self.users, self.teams, self.distribution_options = Table(), Table(), Table()
            self.lead_sources, self.contact_sources, self.hotnesses = Table(), Table(), Table()
            self.campaigns, self.campaign_contacts, self.lead_routes = Table(), Table(), Table()
            self.contacts, self.addresses = Table(), Table(string_ids=True)
            self._address_ids: dict[int, list[str]] = {}
            self.leads, self.offers, self.tasks = Table(), Table(), Table()
            self.team_members = Table()
            # Custom field definitions (string ids, as documented) and their values per contact.
            self.custom_fields = Table(string_ids=True)
            self.custom_field_values: dict[str, str] = {}
            # Users holding a token for our app: /users lists only them (endpoints/users).
            self.token_holders: set[int] = {1}
            # LionDesk behaviours the docs leave open, as knobs (docs/sandbox.md): the
            # defaults are the documented or the pessimistic reading; see control.SETTINGS.
            self.account_type = "agent"            # "broker": /sub-accounts lists the agents
            self.app_owner = "ours"                # "another_account": /users answers the documented 401
            self.single_value_in = "accepted"      # "refused": field[$in]=x alone is a 400
            self.mls_id_values = "any"             # "numeric": a non-numeric mls_id is a 400
            self.v1_service = "on"                 # "gone": the v1 host answers 404
            self.tasks_v20 = "on"                  # "gone": api-v2 /tasks answers 404
            self.tasks_v21 = "on"                  # "gone": the Tasks v2.1 host answers 404
            # Whether an address edit bumps its contact's modified_at is unknown for
            # LionDesk: off by default, the harder case for a poller.
            self.address_edits_bump_contact = False
            # LionDesk v1 partner API
            self.v1_api_keys = {V1_API_KEY, V1_PERSONAL_API_KEY}
            self.v1_user_keys: dict[str, int] = {V1_USER_KEY: 1}
            self.v1_partner_contact_ids: dict[str, int] = {}
            self.v1_activities = Table()
            # Real Geeks Incoming API
            self.realgeeks_credentials = (REALGEEKS_USERNAME, REALGEEKS_PASSWORD)
            self.realgeeks_users: list[dict] = []
            self.realgeeks_leads: dict[tuple[str, str], dict] = {}
            self.realgeeks_requests = Table()
            self.realgeeks_source_system_mode = "writer"
            seed_reference_data(self)

    TRANSIENT = ("lock", "clock", "calls", "faults", "deliverer", "latency_ms")
    """What a snapshot leaves out: the lock, the clock, and the run's call log, faults,
    webhook destination and latency (test knobs, set again by whoever drives the run)."""

    def snapshot(self) -> dict:
        """The world's records and tokens as plain picklable data (see `restore`)."""
        with self.lock:
            data = {name: value for name, value in self.__dict__.items() if name not in self.TRANSIENT}
            tokens = data.pop("tokens")
            data["tokens"] = {name: value for name, value in tokens.__dict__.items() if name != "clock"}
            return data

    def restore(self, data: dict) -> None:
        """Replace the world's records and tokens with a `snapshot()`; transient parts stay."""
        with self.lock:
            tokens = TokenStore(self.clock)
            tokens.__dict__.update(data["tokens"])
            self.__dict__.update({name: value for name, value in data.items()
                                  if name != "tokens" and name not in self.TRANSIENT})
            self.tokens = tokens

    def add_address(self, contact_id: int, values: dict) -> dict:
        """Store an address of contact `contact_id`."""
        now = self.now()
        address = self.addresses.insert({**values, "contact_id": contact_id, "created_at": now, "modified_at": now})
        self._address_ids.setdefault(contact_id, []).append(address["id"])
        return address

    def addresses_of(self, contact_id: int) -> list[dict]:
        """The addresses of contact `contact_id`, oldest first."""
        return [self.addresses.get(key) for key in self._address_ids.get(contact_id, ())]

    def remove_contact(self, contact_id: int) -> dict | None:
        """Delete a contact and its addresses; return the contact."""
        for key in self._address_ids.pop(contact_id, ()):
            self.addresses.remove(key)
        return self.contacts.remove(contact_id)

    def now(self) -> str:
        """The current time as LionDesk writes it."""
        return liondesk_time(self.clock())

    def now_realgeeks(self) -> str:
        """The current time as Real Geeks writes it."""
        return realgeeks_time(self.clock())

    def counts(self) -> dict:
        """How many records each table holds."""
        tables = ("users", "teams", "lead_sources", "contact_sources", "hotnesses", "campaigns",
                  "campaign_contacts", "lead_routes", "contacts", "addresses", "leads", "offers",
                  "tasks", "team_members", "v1_activities", "realgeeks_requests")
        with self.lock:
            counts = {name: len(getattr(self, name)) for name in tables}
            counts["realgeeks_leads"] = len(self.realgeeks_leads)
            return counts


@contextmanager
def sandbox_state() -> Iterator[SandboxState]:
    """The current app's sandbox state, locked for the duration of the block."""
    state: SandboxState = current_app.extensions["sandbox"]
    with state.lock:
        yield state
