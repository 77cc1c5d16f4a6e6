import { expect, test, type Page } from "@playwright/test";
import { restRoot, waitForJob, type Job } from "./fixtures/api";
import { openHydrated } from "./fixtures/app";
import { csv, uniqueName } from "./fixtures/csv";
import { TestSite } from "./fixtures/site";

// SPEC section 9: markup from a researched website, an account and a job name is text
// on every page that shows it and in every export; nothing in it runs.

function watchForScript(page: Page): string[] {
  const dialogs: string[] = [];
  page.on("dialog", async (d) => {
    dialogs.push(d.message());
    await d.dismiss();
  });
  return dialogs;
}

const pwned = (page: Page) => page.evaluate(() => (window as unknown as { __pwned?: string }).__pwned);

test("markup from a researched website stays text on its pages and in the exports", async ({ page, request }) => {
  const site = await TestSite.start();
  const marker = Date.now().toString(36);
  const name = `<i>Hostile ${marker}</i><script>window.__pwned="name"</script>`;
  const account = `<u>Account ${marker}</u>`;
  try {
    const res = await request.post(restRoot("research"), {
      multipart: {
        file: {
          name: "hostile.csv",
          mimeType: "text/csv",
          buffer: Buffer.from(csv(["Company", "Website", "Notes"], [[account, `${site.origin()}/hostile/1`, "=HYPERLINK(\"x\")"]])),
        },
        name,
      },
    });
    expect(res.status()).toBe(201);
    const created = (await res.json()) as Job;
    await waitForJob(request, "research", created.id, (j) => j.status === "completed");
    const dialogs = watchForScript(page);

    await openHydrated(page, `/processing/${created.id}`);
    await expect(page.getByRole("heading", { level: 1 })).toHaveText(name);
    await openHydrated(page, `/processing/${created.id}/accounts`);
    // The site's title and description, as the research found them: text.
    await expect(page.getByText(`<b>Evil 1</b>`, { exact: false }).first()).toBeVisible();
    await expect(page.getByText(account, { exact: false }).first()).toBeVisible();
    expect(await page.locator("b", { hasText: "Evil 1" }).count()).toBe(0);
    expect(await page.locator("u", { hasText: `Account ${marker}` }).count()).toBe(0);
    expect(await page.locator("img[src=x]").count()).toBe(0);
    await openHydrated(page, "/");
    await expect(page.getByRole("link", { name, exact: true })).toBeVisible();
    expect(await pwned(page)).toBeUndefined();
    expect(dialogs).toEqual([]);

    // Exports: served as data, never as a page; the text is there as it was, and a
    // formula cell is made harmless in the CSV.
    const exportCsv = await request.get(`${restRoot("research")}/${created.id}/export?format=csv`);
    expect(exportCsv.headers()["content-type"]).toContain("text/csv");
    expect(exportCsv.headers()["x-content-type-options"]).toBe("nosniff");
    const text = await exportCsv.text();
    expect(text).toContain(account);
    expect(text).toContain("<b>Evil 1</b>");
    expect(text).not.toMatch(/(^|,)"?=HYPERLINK/m);
    expect(text).toContain("'=HYPERLINK");
    const exportJson = await request.get(`${restRoot("research")}/${created.id}/export?format=json`);
    expect(exportJson.headers()["content-type"]).toContain("application/json");
    expect(await exportJson.text()).toContain("Evil 1 description");
  } finally {
    await site.close();
  }
});

test("markup in a preprocessing list stays text on its page", async ({ page, request }) => {
  const marker = Date.now().toString(36);
  const company = `<s>Struck ${marker}</s><script>window.__pwned="row"</script>`;
  const res = await request.post(restRoot("preprocess"), {
    multipart: {
      file: { name: "p.csv", mimeType: "text/csv", buffer: Buffer.from(csv(["Company", "Email"], [[company, "x@example.com"]])) },
      name: uniqueName("<em>Pre</em>"),
    },
  });
  expect(res.status()).toBe(201);
  const created = (await res.json()) as Job;
  await waitForJob(request, "preprocess", created.id, (j) => j.status === "completed");
  const dialogs = watchForScript(page);
  await openHydrated(page, `/preprocess/progress/${created.id}`);
  await expect(page.getByRole("heading", { level: 1 })).toContainText("<em>Pre</em>");
  await expect(page.getByText(`<s>Struck ${marker}</s>`, { exact: false }).first()).toBeVisible();
  expect(await page.locator("s", { hasText: `Struck ${marker}` }).count()).toBe(0);
  expect(await pwned(page)).toBeUndefined();
  expect(dialogs).toEqual([]);
  const exported = await request.get(`${restRoot("preprocess")}/${created.id}/export?format=csv`);
  expect(exported.headers()["content-type"]).toContain("text/csv");
  expect(await exported.text()).toContain(`<s>Struck ${marker}</s>`);
});
