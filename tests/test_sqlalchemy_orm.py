"""SQLAlchemy 2.x ORM on the psycopg driver through the proxy.

Each test declares its models on a fresh ``DeclarativeBase`` with table names unique to the run, creates
them with ``create_all`` and drops them with ``drop_all`` (the database is shared by the whole session).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import (
    URL,
    Engine,
    ForeignKey,
    Numeric,
    String,
    create_engine,
    delete,
    event,
    func,
    inspect,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, selectinload

from tests.support.servers import ProxyProcess


def proxy_url(proxy: ProxyProcess) -> URL:
    return URL.create(
        "postgresql+psycopg", username="postgres", host=proxy.host, port=proxy.port, database="postgres"
    )


@pytest.fixture
def engine(proxy: ProxyProcess) -> Iterator[Engine]:
    engine = create_engine(proxy_url(proxy), pool_size=2, max_overflow=0)
    yield engine
    engine.dispose()


def make_models() -> tuple[type[DeclarativeBase], type[Any], type[Any]]:
    """A fresh metadata with an author/book pair of tables named uniquely for this run."""
    suffix = uuid.uuid4().hex[:10]

    class Base(DeclarativeBase):
        pass

    class Author(Base):
        __tablename__ = f"orm_author_{suffix}"

        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(100), unique=True)
        country: Mapped[str | None]
        created: Mapped[dt.datetime] = mapped_column(server_default=func.now())
        books: Mapped[list[Book]] = relationship(
            back_populates="author", cascade="all, delete-orphan", order_by="Book.id"
        )

    class Book(Base):
        __tablename__ = f"orm_book_{suffix}"

        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str]
        price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
        tags: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
        author_id: Mapped[int] = mapped_column(ForeignKey(f"{Author.__tablename__}.id"))
        author: Mapped[Author] = relationship(back_populates="books")

    return Base, Author, Book


@pytest.fixture
def models(engine: Engine) -> Iterator[tuple[type[DeclarativeBase], type[Any], type[Any]]]:
    base, author, book = make_models()
    base.metadata.create_all(engine)
    yield base, author, book
    base.metadata.drop_all(engine)
    assert not inspect(engine).has_table(author.__tablename__)


def seed(session: Session, author_cls: type[Any], book_cls: type[Any]) -> None:
    session.add_all(
        [
            author_cls(
                name="Ursula",
                country="US",
                books=[
                    book_cls(title="The Dispossessed", price=Decimal("12.50"), tags={"genre": "sf"}),
                    book_cls(title="Earthsea", price=Decimal("9.99"), tags={"genre": "fantasy"}),
                ],
            ),
            author_cls(
                name="Stanisław",
                country="PL",
                books=[book_cls(title="Solaris", price=Decimal("11.00"), tags={"genre": "sf", "ü": True})],
            ),
            author_cls(name="Jorge", country="AR"),
            author_cls(name="Anonymous", country=None),
        ]
    )


def test_orm_create_insert_query_update_delete_and_drop(
    engine: Engine, models: tuple[type[DeclarativeBase], type[Any], type[Any]]
) -> None:
    _, Author, Book = models
    assert inspect(engine).has_table(Author.__tablename__)

    with Session(engine) as session:
        seed(session, Author, Book)
        session.commit()

    with Session(engine) as session:
        # Filters and ordering.
        names = session.scalars(
            select(Author.name).where(Author.country.is_not(None)).order_by(Author.name)
        ).all()
        assert names == ["Jorge", "Stanisław", "Ursula"]
        cheap = session.scalars(
            select(Book).where(Book.price < Decimal("12")).order_by(Book.price.desc())
        ).all()
        assert [(b.title, b.price) for b in cheap] == [
            ("Solaris", Decimal("11.00")),
            ("Earthsea", Decimal("9.99")),
        ]
        sf = session.scalars(
            select(Book.title).where(Book.tags["genre"].astext == "sf").order_by(Book.title)
        ).all()
        assert sf == ["Solaris", "The Dispossessed"]
        per_author = session.execute(
            select(Author.name, func.count(Book.id))
            .outerjoin(Book)
            .group_by(Author.name)
            .order_by(func.count(Book.id).desc(), Author.name)
        ).all()
        assert per_author == [("Ursula", 2), ("Stanisław", 1), ("Anonymous", 0), ("Jorge", 0)]
        assert session.scalar(select(Author.created).where(Author.name == "Jorge")) is not None

        # Update one object and commit.
        jorge = session.scalars(select(Author).where(Author.name == "Jorge")).one()
        jorge.country = "España"
        jorge_id = jorge.id
        session.commit()

    with Session(engine) as fresh:
        assert fresh.get(Author, jorge_id).country == "España"
        # A bulk UPDATE statement, too.
        fresh.execute(update(Book).where(Book.title == "Earthsea").values(price=Decimal("7.25")))
        fresh.commit()

    with Session(engine) as fresh:
        assert fresh.scalar(select(Book.price).where(Book.title == "Earthsea")) == Decimal("7.25")
        # Delete an object (cascading to its books) and a bulk DELETE.
        fresh.delete(fresh.scalars(select(Author).where(Author.name == "Ursula")).one())
        fresh.execute(delete(Author).where(Author.country.is_(None)))
        fresh.commit()

    with Session(engine) as fresh:
        assert fresh.scalars(select(Author.name).order_by(Author.name)).all() == ["Jorge", "Stanisław"]
        assert fresh.scalars(select(Book.title)).all() == ["Solaris"]


def test_orm_one_to_many_loads_with_selectinload(
    engine: Engine, models: tuple[type[DeclarativeBase], type[Any], type[Any]]
) -> None:
    _, Author, Book = models
    with Session(engine) as session:
        seed(session, Author, Book)
        # Enough rows that selectinload's IN list has many parameters.
        session.add_all(
            Author(name=f"author {i}", books=[Book(title=f"b{i}.{j}", price=Decimal(j)) for j in range(3)])
            for i in range(100)
        )
        session.commit()

    with Session(engine) as session:
        statements: list[str] = []

        @event.listens_for(engine, "before_cursor_execute")
        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        try:
            authors = session.scalars(
                select(Author).options(selectinload(Author.books)).order_by(Author.id)
            ).all()
            by_name = {a.name: [b.title for b in a.books] for a in authors}
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert len(statements) == 2  # one for the authors, one IN query for all their books
        assert by_name["Ursula"] == ["The Dispossessed", "Earthsea"]
        assert by_name["Stanisław"] == ["Solaris"]
        assert by_name["Jorge"] == []
        assert by_name["author 42"] == ["b42.0", "b42.1", "b42.2"]
        assert len(authors) == 104

        # Many-to-one back reference and a join query.
        solaris = session.scalars(select(Book).where(Book.title == "Solaris")).one()
        assert solaris.author.name == "Stanisław"
        titles = session.scalars(
            select(Book.title).join(Book.author).where(Author.country == "US").order_by(Book.id)
        ).all()
        assert titles == ["The Dispossessed", "Earthsea"]


def test_orm_failed_flush_rolls_back_and_session_recovers(
    engine: Engine, models: tuple[type[DeclarativeBase], type[Any], type[Any]]
) -> None:
    _, Author, _ = models
    with Session(engine) as session:
        session.add(Author(name="Unique"))
        session.commit()
        session.add(Author(name="Keep me?"))
        session.add(Author(name="Unique"))
        with pytest.raises(IntegrityError) as info:
            session.commit()
        assert info.value.orig is not None
        assert info.value.orig.sqlstate == "23505"
        session.rollback()
        assert session.scalars(select(Author.name)).all() == ["Unique"]

        # Savepoints through begin_nested().
        with session.begin_nested():
            session.add(Author(name="Nested"))
        nested = session.begin_nested()
        session.add(Author(name="Discarded"))
        session.flush()
        nested.rollback()
        session.commit()
        assert sorted(session.scalars(select(Author.name)).all()) == ["Nested", "Unique"]


def test_orm_upsert_and_returning(
    engine: Engine, models: tuple[type[DeclarativeBase], type[Any], type[Any]]
) -> None:
    _, Author, _ = models
    with Session(engine) as session:
        rows = [{"name": f"n{i}", "country": "XX"} for i in range(50)]
        ids = session.scalars(insert(Author).returning(Author.id), rows).all()
        assert len(ids) == 50
        statement = insert(Author).values(name="n7", country="YY")
        statement = statement.on_conflict_do_update(index_elements=[Author.name], set_={"country": "YY"})
        session.execute(statement)
        session.commit()
    with Session(engine) as fresh:
        assert fresh.scalar(select(Author.country).where(Author.name == "n7")) == "YY"
        assert fresh.scalar(select(func.count()).select_from(Author).where(Author.country == "XX")) == 49


def test_engine_pool_reuses_connections_through_the_proxy(engine: Engine) -> None:
    pids: set[int] = set()
    for i in range(20):
        with engine.connect() as connection:
            pids.add(connection.exec_driver_sql("select pg_backend_pid()").scalar_one())
            assert connection.exec_driver_sql("select %(x)s::int", {"x": i}).scalar_one() == i
    assert len(pids) == 1  # the pool hands the same proxied connection back each time
