use leptos::prelude::*;

#[component]
pub fn AccountsPage() -> impl IntoView {
    view! { <h1>"Accounts"</h1> }
}
