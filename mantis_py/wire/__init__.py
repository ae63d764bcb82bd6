"""The mantis.v1 wire protocol shared by agents and gateway (docs/protocol.md). Pure: no I/O.

- :mod:`.messages`: one frozen dataclass per message, ``MESSAGE_TYPES``, ``SUBPROTOCOL``;
- :mod:`.codec`: ``encode(msg) -> bytes``, ``decode(data) -> Message`` (orjson);
- :mod:`.agent_link`: ``AgentLink`` / ``GatewayLink`` state machines;
- :mod:`.client_link`: ``ClientLink`` for the public query protocol (docs/protocol.md).
"""

from __future__ import annotations

from .agent_link import AGENT_SIDE as AGENT_SIDE
from .agent_link import GATEWAY_SIDE as GATEWAY_SIDE
from .agent_link import AgentLink as AgentLink
from .agent_link import GatewayLink as GatewayLink
from .agent_link import LinkState as LinkState
from .client_link import QUERY_TRANSITIONS as QUERY_TRANSITIONS
from .client_link import ClientLink as ClientLink
from .client_link import QueryState as QueryState
from .codec import CLOSE_BAD_DATA as CLOSE_BAD_DATA
from .codec import CLOSE_PROTOCOL as CLOSE_PROTOCOL
from .codec import decode as decode
from .codec import encode as encode
from .messages import AGENT_TO_GATEWAY as AGENT_TO_GATEWAY
from .messages import CLIENT_TO_GATEWAY as CLIENT_TO_GATEWAY
from .messages import GATEWAY_TO_AGENT as GATEWAY_TO_AGENT
from .messages import GATEWAY_TO_CLIENT as GATEWAY_TO_CLIENT
from .messages import MESSAGE_TYPES as MESSAGE_TYPES
from .messages import SUBPROTOCOL as SUBPROTOCOL
from .messages import Accepted as Accepted
from .messages import AgentMessage as AgentMessage
from .messages import Cancel as Cancel
from .messages import ClientMessage as ClientMessage
from .messages import Complete as Complete
from .messages import Error as Error
from .messages import Events as Events
from .messages import Hello as Hello
from .messages import Message as Message
from .messages import Meta as Meta
from .messages import Partial as Partial
from .messages import Ping as Ping
from .messages import Pong as Pong
from .messages import Query as Query
from .messages import Rows as Rows
from .messages import Stats as Stats
from .messages import SubError as SubError
from .messages import Subscribe as Subscribe
from .messages import Unsubscribe as Unsubscribe
from .messages import Welcome as Welcome

__all__ = [
    "AGENT_SIDE",
    "AGENT_TO_GATEWAY",
    "CLIENT_TO_GATEWAY",
    "CLOSE_BAD_DATA",
    "CLOSE_PROTOCOL",
    "GATEWAY_SIDE",
    "GATEWAY_TO_AGENT",
    "GATEWAY_TO_CLIENT",
    "MESSAGE_TYPES",
    "QUERY_TRANSITIONS",
    "SUBPROTOCOL",
    "Accepted",
    "AgentLink",
    "AgentMessage",
    "Cancel",
    "ClientLink",
    "ClientMessage",
    "Complete",
    "Error",
    "Events",
    "GatewayLink",
    "Hello",
    "LinkState",
    "Message",
    "Meta",
    "Partial",
    "Ping",
    "Pong",
    "Query",
    "QueryState",
    "Rows",
    "Stats",
    "SubError",
    "Subscribe",
    "Unsubscribe",
    "Welcome",
    "decode",
    "encode",
]
