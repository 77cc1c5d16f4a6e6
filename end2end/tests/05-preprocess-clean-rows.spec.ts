import { expect, test } from "@playwright/test";
import { cancelQuietly, getJob, restRoot } from "./fixtures/api";
import { csv, uniqueName } from "./fixtures/csv";
import { DashboardPage, JobPage } from "./fixtures/pages";
import { TestSite } from "./fixtures/site";

// "Preprocessing": a messy export is cleaned, flagged, exported and sent on to research.
// Each company gets its own loopback address, because rows sharing a domain are
// duplicates by design.
test("a messy CSV is cleaned, flagged, exported and sent on to research", async ({ page, request }) => {
  const site = await TestSite.start({ delayMs: [100, 300], hosts: ["127.0.0.2", "127.0.0.3", "127.0.0.5"] });
  const acmePort = new URL(site.origin("127.0.0.2")).port;
  const messy = csv(
    ["Company", "Website", "Email"],
    [
      ["Acme Inc.", site.url(1, "127.0.0.2"), "sales@acme.example"], // line 2
      ["  Globex   GmbH ", site.url(2, "127.0.0.3"), ""], // line 3
      ["Acme Incorporated", `http://www.127.0.0.2:${acmePort}/site/3`, ""], // line 4: www. + duplicate of 2
      ["Initech LLC", "", "jane.doe@gmail.com"], // line 5: e-mail only, free-mail
      ["Umbrella Ltd", "http://127.0.0.6:9/", ""], // line 6: nothing listens there
      ["", site.url(4, "127.0.0.5"), ""], // line 7: no company name
    ],
  );
  const ids: number[] = [];
  try {
    const dashboard = new DashboardPage(page);
    await dashboard.open();
    const job = await dashboard.create("preprocess", messy, { name: uniqueName("CRM export"), filename: "crm.csv" });
    ids.push(job.id);
    // The controls sit under the badge on this page.
    await expect(job.status).toBeVisible();
    await expect(job.status).toHaveText(/Completed/, { timeout: 60_000 });
    await expect(job.control("Delete Job")).toBeVisible();

    const table = page.getByRole("region", { name: "rows table" });
    const row = (line: number) =>
      table.getByRole("row").filter({ has: page.getByRole("cell", { name: String(line), exact: true }) });
    await expect(row(2)).toContainText("Acme");
    await expect(row(2).getByText("Inc.", { exact: true })).toBeVisible();
    await expect(row(2)).toContainText("127.0.0.2");
    await expect(row(2)).toContainText("Reachable");
    await expect(row(3)).toContainText("Globex");
    await expect(row(3).getByText("GmbH", { exact: true })).toBeVisible();
    await expect(row(4)).toContainText("127.0.0.2");
    await expect(row(4)).toContainText("Duplicate of line 2");
    await expect(row(5)).toContainText("Free-mail");
    await expect(row(5)).toContainText("missing domain");
    await expect(row(6)).toContainText("Unreachable");
    await expect(row(7)).toContainText("missing company name");

    // The status filter narrows the table.
    await page.getByRole("navigation", { name: "Filter by status" }).getByRole("link", { name: /Failed/ }).click();
    await expect(page).toHaveURL(/status=failed/);
    await expect(table).toContainText("No rows with this status.");
    await page.getByRole("navigation", { name: "Filter by status" }).getByRole("link", { name: /All/ }).click();
    await expect(row(2)).toBeVisible();

    // Counts and filters by outcome (SPEC section 16): every row reads what became of it.
    const outcomes = page.getByRole("navigation", { name: "Filter by outcome" });
    await expect(outcomes.getByRole("link", { name: /Clean/ })).toContainText("2");
    await expect(outcomes.getByRole("link", { name: /Duplicate/ })).toContainText("1");
    await expect(outcomes.getByRole("link", { name: /Invalid/ })).toContainText("2");
    await expect(outcomes.getByRole("link", { name: /Unreachable/ })).toContainText("1");
    await expect(row(4).locator("[data-outcome=duplicate]")).toBeVisible();
    await expect(table).not.toContainText("Completed");
    await outcomes.getByRole("link", { name: /Clean/ }).click();
    await expect(page).toHaveURL(/outcome=clean/);
    await expect(row(4)).toHaveCount(0);
    await expect(row(2)).toBeVisible();
    await expect(row(3)).toBeVisible();
    await page.getByRole("navigation", { name: "Filter by status" }).getByRole("link", { name: /All/ }).click();
    await expect(row(4)).toBeVisible();

    // The export link the page offers hands out every row.
    const exportLink = page.getByRole("link", { name: "CSV", exact: true });
    const href = await exportLink.getAttribute("href");
    expect(href).toBe(`${restRoot("preprocess")}/${job.id}/export?format=csv`);
    const exported = await request.get(href!);
    expect(exported.status()).toBe(200);
    const text = await exported.text();
    for (const expected of ["Acme", "Globex", "Initech", "Umbrella", "127.0.0.3"]) {
      expect(text).toContain(expected);
    }
    expect(text.trim().split(/\r?\n/).length).toBeGreaterThanOrEqual(7);
    const json = await request.get(`${restRoot("preprocess")}/${job.id}/export?format=json`);
    expect(json.status()).toBe(200);

    // The clean rows become a research job: the page says how many go and asks first.
    await page.getByRole("button", { name: "Start full research from clean rows (2)" }).click();
    const ask = page.getByRole("dialog", { name: "Research 2 clean rows?" });
    await expect(ask).toBeVisible();
    await ask.getByRole("button", { name: "Start research" }).click();
    await page.waitForURL(/\/processing\/\d+$/);
    const researchId = Number(/\/processing\/(\d+)$/.exec(page.url())![1]);
    ids.push(researchId);
    const research = new JobPage(page, "research", researchId);
    await expect(research.summary).toBeVisible();
    const created = await getJob(request, "research", researchId);
    // Acme (line 2) and Globex (line 3): valid, unique and reachable.
    expect(created.total).toBe(2);

    // Afterwards the preprocessing page links the job, and a second send is refused
    // naming it.
    await page.goto(`/preprocess/progress/${job.id}`);
    await expect(page.getByTestId("sent-to-research").getByRole("link")).toHaveAttribute("href", `/processing/${researchId}`);
    await expect(page.getByRole("button", { name: /Start full research/ })).toHaveCount(0);
    const again = await request.post(`${restRoot("preprocess")}/${job.id}/research`);
    expect(again.status()).toBe(409);
    expect((await again.json()).error).toContain(created.name);
  } finally {
    await cancelQuietly(request, "preprocess", ids[0] ?? -1);
    if (ids[1] !== undefined) await cancelQuietly(request, "research", ids[1]);
    await site.close();
  }
});
