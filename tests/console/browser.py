"""The console as on-call uses it, in headless Chromium: load the deliveries, filter to the dead
ones, open the dead delivery, redrive it (confirming), and see it delivered.

Run by tests/console.rs against the real binary, which has made one dead delivery of execution
NAME and has since started the SMTP server it failed to reach. A screenshot per step goes to OUT.

    python3 tests/console/browser.py --url http://127.0.0.1:8092 --name exec-1 --out /tmp/shots

With --issuer-login WHO, the console asks for a login first: the test logs in through the
identity provider's page (which approves at once), expects to be shown as WHO, and, with
--hidden NAME --hidden-id ID, that another project's dead delivery is neither listed nor
reachable by its address.

Debian's chromium (/usr/bin/chromium, or --chromium) is launched through Playwright's
executable_path, so Playwright never downloads a browser of its own.
"""

import argparse
import pathlib
import re
import shutil
import sys
import time

from playwright.sync_api import expect, sync_playwright


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--name", required=True, help="the dead delivery's execution name")
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--issuer-login", help="log in through the issuer; who the page then names")
    parser.add_argument("--hidden", help="an execution name the viewer must not see")
    parser.add_argument("--hidden-id", help="that delivery's id")
    parser.add_argument("--hidden-delivered",
                        help="a delivered execution's name the viewer must not see")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    step = 0

    def shot(page, what):
        nonlocal step
        step += 1
        path = args.out / f"{step}-{what}.png"
        page.screenshot(path=str(path), full_page=True)
        print(f"screenshot {path}", flush=True)

    with sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        browser = p.chromium.launch(executable_path=args.chromium, headless=True,
                                    args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(15_000)

        page.goto(args.url + "/")
        if args.issuer_login:
            expect(page.get_by_role("heading", name="Log in")).to_be_visible()
            shot(page, "login")
            page.get_by_role("link", name="Log in with your identity provider").click()
            # The issuer approves at once and sends the browser back; the console moves on to
            # the page it was asked for.
            expect(page.get_by_role("heading", name="Deliveries")).to_be_visible()
            expect(page.locator("header .who")).to_have_text(args.issuer_login)
            # The chart counts every project; this viewer reads only some.
            expect(page.locator("svg[role=img]")).to_have_count(0)
        else:
            expect(page.get_by_role("heading", name="Deliveries")).to_be_visible()
            expect(page.locator("svg[role=img]")).to_be_visible()
        if args.hidden:
            expect(page.locator("table.deliveries tbody tr", has_text=args.hidden)).to_have_count(0)
        shot(page, "deliveries")

        page.fill("#filters", "eq(state,dead)")
        page.get_by_role("button", name="Apply").click()
        expect(page).to_have_url(re.compile(r"filters=eq(\(|%28)state(,|%2C)dead"))
        row = page.locator("table.deliveries tbody tr", has_text=args.name)
        expect(row).to_have_count(1)
        expect(row.locator(".state")).to_have_text("dead")
        expect(page.locator(".tabs a.active")).to_have_text("dead")
        shot(page, "filtered-dead")

        row.get_by_role("link", name=args.name, exact=False).click()
        expect(page.locator("h1 .state")).to_have_text("dead")
        expect(page.locator("ol.history li.dead")).to_have_count(1)
        expect(page.get_by_text("Nothing accepted the connection").first).to_be_visible()
        expect(page.get_by_role("link", name="open in Flyte")).to_be_visible()
        shot(page, "dead-delivery")

        page.get_by_role("link", name="Redrive").click()
        expect(page.get_by_role("heading", name="Redrive?")).to_be_visible()
        page.fill("#note", "SMTP relay is back")
        shot(page, "confirm-redrive")
        page.get_by_role("button", name="Yes, redrive").click()
        expect(page.locator(".notice")).to_contain_text("Redriven")
        shot(page, "redriven")

        # The worker sends it within a poll or two; the page shows what the ledger says.
        deadline = time.monotonic() + 30
        while page.locator("h1 .state").inner_text() != "delivered":
            if time.monotonic() > deadline:
                shot(page, "never-delivered")
                print("the delivery never showed as delivered", file=sys.stderr)
                return 1
            time.sleep(0.3)
            page.reload()
        expect(page.locator("ol.history li.delivered")).to_have_count(1)
        expect(page.locator("ol.history li.redriven")).to_contain_text("SMTP relay is back")
        shot(page, "delivered")

        # What went out lately, newest first: the redriven delivery is there now.
        page.get_by_role("link", name="← Deliveries").click()
        page.locator(".tabs a", has_text="delivered").click()
        expect(page.locator(".tabs a.active")).to_have_text("delivered")
        row = page.locator("table.deliveries tbody tr", has_text=args.name)
        expect(row).to_have_count(1)
        expect(row.locator(".state")).to_have_text("delivered")
        expect(row.locator(".delivered-at")).to_contain_text("delivered")
        if args.hidden_delivered:
            expect(page.locator("table.deliveries tbody tr",
                                has_text=args.hidden_delivered)).to_have_count(0)
        shot(page, "delivered-tab")

        if args.hidden_id:
            page.goto(args.url + "/deliveries/" + args.hidden_id)
            expect(page.get_by_role("heading", name="Not Found")).to_be_visible()
            expect(page.get_by_text(args.hidden)).to_have_count(0)
            shot(page, "hidden-not-found")
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
