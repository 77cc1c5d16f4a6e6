//! The HTML shell and the routes.

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, HashedStylesheet, MetaTags};

use crate::components::erase::erase;
use crate::components::page_title::PageTitle;
use crate::components::resource::JsonBytes;
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{path, SsrMode};

use crate::pages::{
    accounts::AccountsPage,
    dashboard::Dashboard,
    preprocess::PreprocessPage,
    research::ResearchPage,
    signin::{SignInPage, SignOutEverywherePage},
};

pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light" />
                <link rel="icon" href="/favicon.svg" type="image/svg+xml" />
                <HashedStylesheet options=options.clone() id="leptos" />
                <AutoReload options=options.clone() />
                <HydrationScripts options islands=true />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <PageTitle text="jobdeck" />
        <Router>
            <a class="skip-link" href="#main">
                "Skip to content"
            </a>
            <header class="topbar">
                <div class="topbar-inner">
                    <a href="/" class="brand">
                        <span class="brand-mark" aria-hidden="true">
                            "▤"
                        </span>
                        "jobdeck"
                    </a>
                    <span class="tagline">"batch jobs over account lists, under your control"</span>
                    <SignOut />
                </div>
            </header>
            <main class="page" id="main">
                <Routes fallback=|| {
                    #[cfg(feature = "ssr")]
                    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
                        response.set_status(axum::http::StatusCode::NOT_FOUND);
                    }
                    erase(view! {
                        <PageTitle text="Page not found · jobdeck" />
                        <div class="card not-found">
                            <h1>"Page not found"</h1>
                            <p>
                                <a href="/">"Back to the dashboard"</a>
                            </p>
                        </div>
                    })
                }>
                    // Each page erased without its async hydration (see components/erase.rs).
                    // Async: the server answers once the data is in, so the HTML is complete
                    // for readers without JavaScript and "no such job" can be a real 404.
                    <Route path=path!("/signin") view=|| erase(SignInPage()) />
                    <Route path=path!("/signout-everywhere") view=|| erase(SignOutEverywherePage()) />
                    <Route path=path!("/") view=|| erase(Dashboard()) ssr=SsrMode::Async />
                    <Route path=path!("/processing/:id") view=|| erase(ResearchPage()) ssr=SsrMode::Async />
                    <Route path=path!("/processing/:id/accounts") view=|| erase(AccountsPage()) ssr=SsrMode::Async />
                    <Route path=path!("/preprocess/progress/:id") view=|| erase(PreprocessPage()) ssr=SsrMode::Async />
                </Routes>
            </main>
            <Hydrated />
        </Router>
    }
}

/// "Sign out", for a person signed in with the access token; nothing otherwise. The
/// answer is read while the server renders the page and travels with it.
#[component]
fn SignOut() -> impl IntoView {
    let signed_in: OnceResource<_, JsonBytes> = OnceResource::new_with_options(crate::api::signed_in(), false);
    view! {
        <Suspense>
            {move || Suspend::new(async move {
                signed_in.await.unwrap_or(false).then(|| view! {
                    <form method="post" action="/signout" class="signout">
                        <a href="/signout-everywhere" class="signout-everywhere">"Sign out everywhere…"</a>
                        <button type="submit" class="btn btn-small btn-plain">"Sign out"</button>
                    </form>
                })
            })}
        </Suspense>
    }
}

/// Marks the page interactive (`data-hydrated` on `<body>`), so tests and people alike
/// can tell. The last island of every page: islands hydrate in document order, so when
/// this one runs, the page's others have.
#[island]
fn Hydrated() -> impl IntoView {
    Effect::new(move |_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });
}
