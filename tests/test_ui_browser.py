"""The /ui page in a real browser: Debian's headless Chromium driven by Selenium, against a running
server on the tiny model, with and without an API key. Every wait is on a state of the page."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from browser import chrome, console_errors, element, screenshot, wait_for
from conftest import LIMIT_S, make_settings, running_server, wait_job

KEY = "ui-s3cret"
SEED = 424242
# Chromium logs every 4xx answer to fetch as a console error: only the key test expects one.
REFUSED = ("status of 401",)


@dataclass
class Site:
    url: str
    key: str | None
    driver: WebDriver
    downloads: Path

    def api(self) -> httpx.Client:
        headers = {"X-API-Key": self.key} if self.key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


def wait_ready(url: str, key: str | None) -> None:
    headers = {"X-API-Key": key} if key else {}
    deadline = time.monotonic() + LIMIT_S
    while httpx.get(f"{url}/readyz", headers=headers).status_code != 200:
        if time.monotonic() > deadline:
            raise TimeoutError("models did not load")
        time.sleep(0.1)


def body_state(driver: WebDriver, name: str) -> str | None:
    value: str | None = driver.find_element(By.TAG_NAME, "body").get_attribute(f"data-{name}")
    return value


def enter_key(driver: WebDriver, key: str) -> None:
    field = element(driver, "#key-dialog[open] #key-input")
    field.clear()
    field.send_keys(key, Keys.ENTER)


@pytest.fixture(scope="module", params=["open", "keyed"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A tiny-model server and one Chromium on its page; keyed: the page asked for the key once."""
    key = KEY if request.param == "keyed" else None
    home = tmp_path_factory.mktemp(f"ui-{request.param}")
    with running_server(make_settings(home, image_api_key=key)) as url:
        wait_ready(url, key)
        driver = chrome(home / "downloads")
        try:
            driver.get(f"{url}/ui/")
            if key:
                wait_for(driver, lambda d: body_state(d, "key-state") == "needed", "the page asks for the key")
                enter_key(driver, key)
            wait_for(driver, lambda d: body_state(d, "ready") == "true", "the page started")
            assert console_errors(driver, REFUSED if key else ()) == []
            yield Site(url, key, driver, home / "downloads")
        finally:
            driver.quit()


@pytest.fixture
def page(site: Site) -> Iterator[WebDriver]:
    """The page, fresh: this tab's key kept (asked once per tab), its job cards forgotten."""
    driver = site.driver
    driver.set_window_size(1280, 900)
    driver.get(f"{site.url}/ui/")
    driver.execute_script("sessionStorage.removeItem('cofounder_agent.jobs')")
    driver.refresh()
    wait_for(driver, lambda d: body_state(d, "ready") == "true", "the page started")
    yield driver
    assert console_errors(driver) == []


def tab(driver: WebDriver, name: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f"nav a[data-tab={name}]").click()
    element(driver, f"[data-panel={name}]")


def create_board(driver: WebDriver, name: str) -> str:
    tab(driver, "gallery")
    field = element(driver, "#board-name")
    field.send_keys(name, Keys.ENTER)
    select = Select(driver.find_element(By.ID, "board-select"))
    wait_for(driver, lambda d: select.first_selected_option.text == name, "the new board is shown")
    board_id: str = select.first_selected_option.get_attribute("value") or ""
    return board_id


def submit_job(driver: WebDriver, fields: dict[str, str], board: str | None = None) -> WebElement:
    """Fill the job form as a user would and submit it; the new job's card."""
    tab(driver, "create")
    form = element(driver, "#job-form")
    before = len(driver.find_elements(By.CSS_SELECTOR, "[data-job-id]"))
    for name, value in fields.items():
        control = form.find_element(By.NAME, name)
        if control.tag_name == "select":
            Select(control).select_by_value(value)
        else:
            control.clear()
            control.send_keys(value)
    if board:
        Select(form.find_element(By.NAME, "board_id")).select_by_visible_text(board)
    form.find_element(By.CSS_SELECTOR, "[type=submit]").click()
    wait_for(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-job-id]")) > before, "a job card")
    return driver.find_elements(By.CSS_SELECTOR, "#job-cards [data-job-id]")[0]


def progress_value(card: WebElement) -> float:
    return float(card.find_element(By.TAG_NAME, "progress").get_property("value"))


def tile(driver: WebDriver, image_id: str, board: str | None = None) -> WebElement:
    """A picture's tile in the grid (of ``board``, when given) once its thumbnail shows."""
    grid = "#grid" if board is None else f"#grid[data-board='{board}']"
    return element(driver, f"{grid} [data-image-id='{image_id}'][data-loaded=true]")


def open_dialog(driver: WebDriver, button: WebElement) -> WebElement:
    button.click()
    return element(driver, "#image-dialog[open][data-loaded=true]")


def test_a_job_from_the_form_shows_its_progress_then_its_images_with_the_seed_given(
    site: Site, page: WebDriver
) -> None:
    board = "foxes, " + ("with a key" if site.key else "open")
    board_id = create_board(page, board)
    fields = {"prompt": "a red fox in the snow", "seed": str(SEED), "width": "64", "height": "64"}
    card = submit_job(page, {**fields, "steps": "8", "num_images": "2", "refiner_mode": "none"}, board)

    wait_for(page, lambda d: card.get_attribute("data-status") == "succeeded", "the job succeeded")
    assert progress_value(card) == 1
    # Each step event redraws the bar and counts: proof that it moved, however fast the job ran.
    assert int(card.find_element(By.TAG_NAME, "progress").get_attribute("data-steps-seen") or 0) >= 2
    ids = [t.get_attribute("data-image-id") or "" for t in card.find_elements(By.CSS_SELECTOR, "[data-image-id]")]
    assert len(ids) == 2

    card.find_element(By.CSS_SELECTOR, "[data-action=show]").click()
    tiles = [tile(page, image_id, board_id) for image_id in ids]
    assert Select(page.find_element(By.ID, "board-select")).first_selected_option.text == board
    screenshot(page, "gallery")

    dialog = open_dialog(page, tiles[0])  # the first image has the seed given; the next, seed + 1
    assert dialog.find_element(By.CSS_SELECTOR, "[data-field=seed]").text == str(SEED)
    assert dialog.find_element(By.CSS_SELECTOR, "[data-field=prompt]").text == fields["prompt"]
    assert dialog.find_element(By.CSS_SELECTOR, "[data-field=steps]").text == "8"
    assert dialog.find_element(By.CSS_SELECTOR, "[data-field=refiner]").text == "none"
    base = dialog.find_element(By.CSS_SELECTOR, "[data-stage=base]")
    assert base.find_element(By.CSS_SELECTOR, "[data-field=outcome]").text == "ok"
    assert base.find_element(By.CSS_SELECTOR, "[data-field=seconds]").text.endswith(" s")
    assert (dialog.find_element(By.ID, "image-download").get_attribute("href") or "").startswith("blob:")
    screenshot(page, "image-dialog")
    ActionChains(page).send_keys(Keys.ESCAPE).perform()
    wait_for(page, lambda d: not dialog.is_displayed(), "the dialog closed")
    assert page.switch_to.active_element.get_attribute("data-image-id") == ids[0]


def test_a_running_job_cancelled_from_the_page_shows_cancelled(site: Site, page: WebDriver) -> None:
    # The one slow job (about 10 s on two cores): long enough to be caught running.
    slow = {"prompt": "a slow lighthouse", "width": "384", "height": "384", "steps": "100", "refiner_mode": "none"}
    card = submit_job(page, slow)
    wait_for(
        page,
        lambda d: card.get_attribute("data-status") == "running" and 0 < progress_value(card) < 1,
        "the job running, its bar part way",
    )
    page.execute_script("arguments[0].scrollIntoView({block: 'center'})", card)
    screenshot(page, "job-running")
    card.find_element(By.CSS_SELECTOR, "[data-action=cancel]").click()
    wait_for(page, lambda d: card.get_attribute("data-status") == "cancelled", "the job cancelled")
    assert card.find_element(By.CSS_SELECTOR, "[data-field=status]").text == "cancelled"
    assert not card.find_element(By.CSS_SELECTOR, "[data-action=cancel]").is_displayed()
    with site.api() as api:
        assert api.get(f"/v1/jobs/{card.get_attribute('data-job-id')}").json()["status"] == "cancelled"


@pytest.mark.parametrize("site", ["keyed"], indirect=True)
def test_the_page_asks_for_the_key_and_says_clearly_when_it_is_wrong(site: Site) -> None:
    driver = site.driver
    driver.get(f"{site.url}/ui/")
    driver.execute_script("sessionStorage.clear()")  # a new tab: no key yet
    driver.refresh()
    wait_for(driver, lambda d: body_state(d, "key-state") == "needed", "the page asks for the key")
    assert not driver.find_element(By.ID, "key-error").is_displayed()

    enter_key(driver, "not-the-key")
    alert = element(driver, "#key-dialog [role=alert]")
    assert "The server refused this API key" in alert.text
    assert body_state(driver, "ready") is None

    enter_key(driver, KEY)
    wait_for(driver, lambda d: body_state(d, "ready") == "true", "the page started")
    assert not driver.find_element(By.ID, "key-dialog").is_displayed()
    tab(driver, "health")
    warning = element(driver, "[data-field=tiny-warning]")
    assert "Tiny test model" in warning.text
    assert element(driver, "#health-list [data-field=device]").text == "cpu"
    element(driver, "#workers-table tbody tr")
    # The 401s of the first call and of the wrong key; nothing else.
    assert console_errors(driver, REFUSED) == []


def make_image(site: Site, board_id: str) -> str:
    with site.api() as api:
        job = {"prompt": "a pebble", "width": 64, "height": 64, "steps": 2, "board_id": board_id}
        job["refiner"] = {"mode": "none"}
        done = wait_job(api, api.post("/v1/jobs", json=job).json()["id"])
        assert done["status"] == "succeeded", done
        image_id: str = done["image_ids"][0]
        return image_id


def test_an_image_moves_to_another_board_its_board_zips_and_it_is_deleted_after_a_confirmation(
    site: Site, page: WebDriver
) -> None:
    with site.api() as api:
        there = api.post("/v1/boards", json={"name": "there"}).json()["id"]
    here = create_board(page, "here")
    image_id = make_image(site, here)
    page.refresh()  # the picture was made behind the page's back
    wait_for(page, lambda d: body_state(d, "ready") == "true", "the page started")
    Select(page.find_element(By.ID, "board-select")).select_by_value(here)

    dialog = open_dialog(page, tile(page, image_id))
    Select(dialog.find_element(By.ID, "image-move")).select_by_visible_text("there")
    dialog.find_element(By.ID, "image-move-go").click()
    wait_for(page, lambda d: not d.find_elements(By.CSS_SELECTOR, f"#grid [data-image-id='{image_id}']"), "moved out")
    Select(page.find_element(By.ID, "board-select")).select_by_value(there)
    moved = tile(page, image_id)

    page.find_element(By.ID, "board-zip").click()
    zipped = site.downloads / f"board-{there}.zip"
    wait_for(page, lambda d: zipped.is_file() and zipped.stat().st_size > 0, "the board's zip downloaded")

    dialog = open_dialog(page, moved)
    dialog.find_element(By.ID, "image-delete").click()
    confirm = element(page, "#confirm-dialog[open]")
    assert "for good" in confirm.text
    confirm.find_element(By.ID, "confirm-ok").click()
    wait_for(page, lambda d: not d.find_elements(By.CSS_SELECTOR, f"#grid [data-image-id='{image_id}']"), "deleted")
    with site.api() as api:
        assert api.get(f"/v1/images/{image_id}/metadata").status_code == 404


def test_at_a_phones_width_nothing_overflows_and_the_keyboard_opens_and_closes_a_picture(
    site: Site, page: WebDriver
) -> None:
    image_id = make_image(site, create_board(page, "phone"))
    page.set_window_size(390, 844)
    page.refresh()
    wait_for(page, lambda d: body_state(d, "ready") == "true", "the page started")
    tile(page, image_id)
    for name in ("gallery", "create", "queue", "health"):
        tab(page, name)
        assert page.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"), name
    tab(page, "gallery")
    screenshot(page, "gallery-phone")

    # Tab from the top of the page to the first tile: every control on the way takes focus.
    page.execute_script("document.activeElement.blur()")

    def focused(d: WebDriver) -> str | None:
        value: str | None = d.switch_to.active_element.get_attribute("data-image-id")
        return value

    for _ in range(40):
        if focused(page) == image_id:
            break
        ActionChains(page).send_keys(Keys.TAB).perform()
    assert focused(page) == image_id
    ActionChains(page).send_keys(Keys.ENTER).perform()
    dialog = element(page, "#image-dialog[open][data-loaded=true]")
    assert page.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    ActionChains(page).send_keys(Keys.ESCAPE).perform()
    wait_for(page, lambda d: not dialog.is_displayed(), "the dialog closed")
    assert focused(page) == image_id
