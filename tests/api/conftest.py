from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.settings import Settings

DELIVERY = "test-delivery-key"
ADMIN = "test-admin-key"


@pytest.fixture
def settings(redis_url: str, model_dir: Path) -> Settings:
    return Settings(
        redis_url=redis_url,
        data_dir=model_dir,
        delivery_keys=(DELIVERY,),
        admin_keys=(ADMIN,),
        train_demo_model=False,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def delivery() -> dict[str, str]:
    return {"Authorization": f"Bearer {DELIVERY}"}


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN}"}
