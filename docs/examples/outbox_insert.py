"""Write a Herald event from a Python/SQLAlchemy application.

The event goes into herald_outbox in the same transaction as the business
change, so it exists if and only if the change commits. Herald's relay does
the rest. Usage: python3 outbox_insert.py SQLALCHEMY_URL
"""
import json
import os
import sys
import time
import uuid
from datetime import datetime, timezone

from sqlalchemy import create_engine, text

INSERT_EVENT = text(
    "INSERT INTO herald_outbox (event_id, event_type, partition_key, payload) "
    "VALUES (:event_id, :event_type, :partition_key, :payload)"
)
SCHEMA_BASE = "https://heraldhq.github.io/herald/schemas/"


def uuid7():
    """A UUIDv7 (RFC 9562), like Herald's own ids; uuid.uuid7() from Python 3.14."""
    if hasattr(uuid, "uuid7"):
        return uuid.uuid7()
    b = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10))
    b[6] = 0x70 | (b[6] & 0x0F)  # version 7
    b[8] = 0x80 | (b[8] & 0x3F)  # variant 10
    return uuid.UUID(bytes=bytes(b))


def now():
    """The current time as a CloudEvent writes it: RFC 3339, UTC."""
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def write_event(conn, event_type, subject, partition_key, data, source="/portal"):
    """Add one CloudEvent to the outbox on conn's transaction; return its id."""
    event_id = str(uuid7())  # str() is the canonical lower-case form the relay requires
    payload = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": event_type,
        "subject": subject,
        "time": now(),
        "datacontenttype": "application/json",
        "dataschema": SCHEMA_BASE + event_type + "/v1.json",
        "partitionkey": partition_key,
        "data": data,
    }
    conn.execute(INSERT_EVENT, {
        "event_id": event_id,
        "event_type": event_type,
        "partition_key": partition_key,  # must equal payload["partitionkey"]
        "payload": json.dumps(payload, separators=(",", ":")),
    })
    return event_id


def main(url):
    engine = create_engine(url)
    product_id = "10000000-0000-4000-8000-000000000001"
    with engine.begin() as conn:  # one transaction: the change and its event
        conn.execute(text("UPDATE data_products SET name = :name WHERE id = :id"),
                     {"name": "Orders v2", "id": product_id})
        # The whole data product, as the type's schema requires (docs/events.md):
        # consumers act on the event alone.
        data = {
            "id": product_id,
            "name": "Orders v2",
            "namespace": "sales-orders",
            "description": "Order facts",
            "status": "active",
            "domain": {"id": "00000000-0000-4000-8000-0000000000d1", "name": "Sales"},
            "type": {"id": "00000000-0000-4000-8000-0000000000a1", "name": "Source-aligned"},
            "settings": {"retention_days": "30"},
            "team_members": [{"user": {"id": "00000000-0000-4000-8000-000000000001",
                                       "email": "ana@example.com"},
                              "role": "Owner"}],
            "as_of": now(),  # when this state was true: the change, now
            "actor_id": "00000000-0000-4000-8000-000000000001",
            "audit_record_id": "e0c1f6a2-5d0b-4c1e-9a53-0b7f2d3c4e02",
        }
        event_id = write_event(conn, "io.herald.portal.data_product.updated",
                               "data_products/" + product_id, product_id, data)
    print(event_id)


if __name__ == "__main__":
    main(sys.argv[1])
