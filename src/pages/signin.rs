//! `/signin`: the access token's form (SPEC section 9). A plain form post, so it works
//! before (and without) the browser code; the server sets the session cookie.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::components::page_title::PageTitle;

#[component]
pub fn SignInPage() -> impl IntoView {
    let query = use_query_map();
    let failed = move || query.with(|q| q.get("failed").is_some());
    let next = move || query.with(|q| q.get("next").unwrap_or_else(|| "/".into()));
    view! {
        <PageTitle text="Sign in · jobdeck" />
        <section class="card signin" aria-labelledby="signin-title">
            <h1 id="signin-title">"Sign in"</h1>
            <p class="muted">"This jobdeck asks for the access token it was started with (JOBDECK_TOKEN)."</p>
            <form method="post" action="/signin">
                <input type="hidden" name="next" value=next />
                <label for="signin-token">"Access token"</label>
                <input id="signin-token" type="password" name="token" autocomplete="current-password" required autofocus />
                <button type="submit" class="btn btn-primary">"Sign in"</button>
            </form>
            {move || failed().then(|| view! {
                <p class="alert" role="alert">"That is not the token this server was started with."</p>
            })}
        </section>
    }
}

/// `/signout-everywhere`: ends every session of this jobdeck (SPEC section 11), after
/// saying what that does. A page of its own, not a button beside "Sign out": it signs
/// out every browser, and a copied cookie with them.
#[component]
pub fn SignOutEverywherePage() -> impl IntoView {
    view! {
        <PageTitle text="Sign out everywhere · jobdeck" />
        <section class="card signin" aria-labelledby="everywhere-title">
            <h1 id="everywhere-title">"Sign out everywhere"</h1>
            <p>
                "This ends every signed-in session of this jobdeck: this browser, any other browser, and any "
                "copy of a session cookie. Everyone signs in again with the access token. Scripts that send "
                "the token itself are not affected."
            </p>
            <form method="post" action="/signout">
                <input type="hidden" name="everywhere" value="1" />
                <button type="submit" class="btn btn-danger">"Sign out everywhere"</button>
            </form>
            <p>
                <a href="/">"Back to the dashboard"</a>
            </p>
        </section>
    }
}
