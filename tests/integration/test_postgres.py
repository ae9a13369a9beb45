"""The ``database_url`` fixture hands every test an empty, writable database on each backend."""

from __future__ import annotations

import sqlalchemy as sa


def test_database_url_gives_an_empty_database_that_accepts_writes(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
        metadata = sa.MetaData()
        probe = sa.Table(
            "probe",
            metadata,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("note", sa.String(40), nullable=False),
        )
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(probe.insert(), [{"note": "first"}, {"note": "second"}])
        with engine.connect() as conn:
            notes = conn.execute(sa.select(probe.c.note).order_by(probe.c.id)).scalars().all()
        assert notes == ["first", "second"]
    finally:
        engine.dispose()
