"""The Models page shows staged releases and their stage changes, live, as text."""

from __future__ import annotations

import pytest

from shared.protocol import schemas
from tests.shared.samples import figures_sample, release_sample

from .conftest import DOCS, login, manifest, new_page, wait_until

pytestmark = pytest.mark.broker


def test_a_release_and_its_rollback_show_on_the_models_page(browser, consoles, pub, topics):
    # Prepare: a running release, the page open on it
    svc = consoles(topics)
    pub.publish(topics.manifest("digits"), manifest("digits", [str(i) for i in range(10)], version=2), qos=1,
                retain=True)
    rel = release_sample(seq=5)
    pub.publish(topics.release("digits"), schemas.dumps(rel), qos=1, retain=True)
    assert wait_until(lambda: svc.state.fleet.rollout.releases)
    page = new_page(browser)
    login(page, svc, "/models")
    page.wait_for_selector("#release-list table")
    running = page.locator("#release-list").inner_text()
    no_events = page.locator("#release-events").inner_text()

    # Execute: the judge rolls it back (the reason is markup, as a hostile publisher would make it)
    ev = schemas.RolloutEvent(task="digits", release="digits-v3", seq=6, action="rollback", from_version=3,
                              to_version=4, group="ring<26.7 (cam-4)", stage_from=0, stage_to=0,
                              reason="<img src=x onerror=window.pwned=1> worse than control", figures=figures_sample(),
                              forced=True, ts=rel.updated + 15)
    pub.publish(topics.release("digits"), schemas.dumps(rel.model_copy(update={
        "seq": 6, "state": "rolled_back", "restored": 4})), qos=1, retain=True)
    pub.publish(topics.rollout_event("digits"), schemas.dumps(ev), qos=1)
    page.wait_for_selector("#release-events tr.event.rollback", timeout=10_000)
    page.wait_for_timeout(1500)  # the timeline has points by now: reload the plots as the page does
    page.evaluate("for (const i of document.querySelectorAll('.plots img')) i.src = i.src.split('?')[0] + '?t=1'")
    page.wait_for_function("[...document.querySelectorAll('.plots img')].every(i => i.complete)")
    plots_drawn = page.evaluate("[...document.querySelectorAll('.plots img')].map(i => i.naturalWidth)")
    page.screenshot(path=str(DOCS / "console-models-rollout.png"), full_page=True)

    # Assert: the stage, the decision, its figures and its reason, as text
    assert "digits-v3" in running and "running" in running and "1/3" in running and "site:garage → v2" in running
    assert "none yet" in no_events
    assert "rolled back" in page.locator("#release-list").inner_text()
    row = page.locator("#release-events tr.event.rollback").inner_text()
    assert "v3 → v4" in row and "ring<26.7 (cam-4)" in row
    assert "v3: accuracy 0.130 (n=60)" in row and "v2: accuracy 0.950 (n=60)" in row
    assert "-0.820 (-0.900) vs -0.02" in row
    assert "<img src=x onerror=window.pwned=1> worse than control" in row
    assert page.evaluate("window.pwned") is None
    assert plots_drawn == [600, 600], "a plot the page cannot draw"


def test_a_plot_served_alone_carries_its_styles():
    from xml.etree import ElementTree

    from lepton_views.report import Chart, standalone_svg

    ch = Chart("t", y_label="y", y_range=(0.0, 1.0), x_range=(0.0, 1.0))
    ch.line([0.0, 1.0], [0.2, 0.4], "s", "#000")
    root = ElementTree.fromstring(standalone_svg(ch.render()))
    style = root.find("{http://www.w3.org/2000/svg}style")
    assert style is not None and "svg .frame{fill:none" in style.text  # else the frame is a black box
