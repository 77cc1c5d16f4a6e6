import { expect, test } from "@playwright/test";
import { openHydrated } from "./fixtures/app";

// Runs first (file order) against the suite's fresh database.
test("the dashboard hydrates and shows its empty state", async ({ page }) => {
  await openHydrated(page, "/");
  await expect(page.getByRole("heading", { name: "Jobs" })).toBeVisible();
  await expect(page.getByTestId("empty-state")).toHaveText(/No jobs yet/);
});
