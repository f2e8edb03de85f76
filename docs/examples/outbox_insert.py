"""Write a Herald event from a Python/SQLAlchemy application.

The event goes into herald_outbox in the same transaction as the business
change, so it exists if and only if the change commits. Herald's relay does
the rest. Usage: python3 outbox_insert.py SQLALCHEMY_URL
"""
import json
import sys
import uuid
from datetime import datetime, timezone

from sqlalchemy import create_engine, text

INSERT_EVENT = text(
    "INSERT INTO herald_outbox (event_id, event_type, partition_key, payload) "
    "VALUES (:event_id, :event_type, :partition_key, :payload)"
)


def write_event(conn, event_type, subject, partition_key, data, source="/portal"):
    """Add one CloudEvent to the outbox on conn's transaction; return its id."""
    event_id = str(uuid.uuid4())  # any canonical lower-case UUID; uuid.uuid7() on Python 3.14+
    payload = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": event_type,
        "subject": subject,
        "time": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
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
        event_id = write_event(conn, "io.herald.portal.data_product.updated",
                               "data_products/" + product_id, product_id,
                               {"id": product_id, "name": "Orders v2"})
    print(event_id)


if __name__ == "__main__":
    main(sys.argv[1])
