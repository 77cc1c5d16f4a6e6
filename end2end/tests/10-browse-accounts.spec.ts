import { expect, test } from "@playwright/test";
import { waitForJob } from "./fixtures/api";
import { csv, uniqueName } from "./fixtures/csv";
import { openHydrated } from "./fixtures/app";
import { TestSite } from "./fixtures/site";

// The accounts page: results in words, failures with their reasons, filter and pages.
test("accounts are paged, filtered and show their research or failure", async ({ page, request }) => {
  const site = await TestSite.start();
  try {
    const rows = Array.from({ length: 60 }, (_, i) => [`Company ${i + 1} AG`, site.url(i + 1)]);
    rows.push(["Nobody Home Ltd", "http://127.0.0.1:9/"]); // line 62: nothing listens there
    const res = await request.post("/api/process", {
      multipart: {
        file: { name: "big.csv", mimeType: "text/csv", buffer: Buffer.from(csv(["Company", "Website"], rows)) },
        name: uniqueName("Big list"),
        concurrency: "8",
      },
    });
    expect(res.status()).toBe(201);
    const { id } = (await res.json()) as { id: number };
    const done = await waitForJob(request, "research", id, (j) => j.status === "completed", 90_000);
    expect(done.failed).toBe(1);

    await openHydrated(page, `/processing/${id}/accounts`);
    await expect(page.getByRole("heading", { name: /Accounts of Big list/ })).toBeVisible();
    await expect(page.getByText("Showing 1–50 of 61")).toBeVisible();
    const table = page.getByRole("region", { name: "accounts table" });
    await expect(table.getByRole("cell", { name: /Company 1 – industrial widgets/ })).toBeVisible();
    await expect(table.getByRole("cell", { name: /hello@company1\.example/ })).toBeVisible();

    const pages = page.getByRole("navigation", { name: "Pages" });
    await pages.getByRole("link", { name: "Next →" }).click();
    await expect(page).toHaveURL(/offset=50/);
    await expect(page.getByText("Showing 51–61 of 61")).toBeVisible();
    await expect(table.getByRole("cell", { name: /Company 55 – industrial widgets/ })).toBeVisible();
    await expect(pages.getByRole("link", { name: "Next →" })).toHaveCount(0);
    await pages.getByRole("link", { name: "← Previous" }).click();
    await expect(page.getByText("Showing 1–50 of 61")).toBeVisible();

    const filters = page.getByRole("navigation", { name: "Filter by status" });
    await filters.getByRole("link", { name: /Failed/ }).click();
    await expect(page).toHaveURL(/status=failed/);
    await expect(filters.getByRole("link", { name: /Failed/ })).toHaveAttribute("aria-current", "page");
    await expect(page.getByText("Showing 1–1 of 1")).toBeVisible();
    const failed = table.getByRole("row").filter({ hasText: "Nobody Home Ltd" });
    await expect(failed).toContainText("Failed");
    await expect(failed.locator(".item-error")).not.toBeEmpty();

    // The same view after a reload, straight from the server.
    await page.reload();
    await expect(page.getByText("Showing 1–1 of 1")).toBeVisible();
  } finally {
    await site.close();
  }
});
