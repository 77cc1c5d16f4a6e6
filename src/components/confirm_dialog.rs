//! A confirmation asked inside the page, for the actions that cannot be undone.

use leptos::ev::KeyboardEvent;
use leptos::html;
use leptos::prelude::*;

/// A modal question with a confirm and a dismiss button.
///
/// Escape, the dismiss button and a click on the backdrop all dismiss it. The keyboard
/// focus starts on the dismiss button (the safe choice), stays inside while it is open
/// and goes back to where it was when it closes. The caller owns the open/closed state,
/// in a signal that no refresh touches, so new data never closes an open dialog.
#[component]
pub fn ConfirmDialog(
    /// The question, e.g. "Cancel this job?"; also the dialog's accessible name.
    title: String,
    /// What happens if the person confirms.
    body: String,
    /// The confirm button's label, e.g. "Cancel job".
    confirm_label: &'static str,
    /// The dismiss button's label, e.g. "Keep job".
    dismiss_label: &'static str,
    on_confirm: Callback<()>,
    on_dismiss: Callback<()>,
) -> impl IntoView {
    let dismiss_ref = NodeRef::<html::Button>::new();
    let confirm_ref = NodeRef::<html::Button>::new();
    let restore_focus = remember_focus();

    Effect::new(move |_| {
        if let Some(button) = dismiss_ref.get() {
            let _ = button.focus();
        }
    });
    on_cleanup(move || restore_focus.run(()));

    // Two buttons: Tab and Shift+Tab move between them and never leave the dialog.
    let on_keydown = move |ev: KeyboardEvent| match ev.key().as_str() {
        "Escape" => {
            ev.prevent_default();
            on_dismiss.run(());
        }
        "Tab" => {
            ev.prevent_default();
            let on_dismiss_button = match (document().active_element(), dismiss_ref.get_untracked()) {
                (Some(active), Some(dismiss)) => {
                    let dismiss: &web_sys::Element = dismiss.as_ref();
                    active == *dismiss
                }
                _ => false,
            };
            let next = if on_dismiss_button { confirm_ref.get_untracked() } else { dismiss_ref.get_untracked() };
            if let Some(button) = next {
                let _ = button.focus();
            }
        }
        _ => {}
    };

    view! {
        <div class="dialog-backdrop" on:click=move |_| on_dismiss.run(())></div>
        <div
            class="dialog"
            role="dialog"
            aria-modal="true"
            aria-labelledby="confirm-title"
            aria-describedby="confirm-body"
            on:keydown=on_keydown
        >
            <h2 id="confirm-title">{title}</h2>
            <p id="confirm-body">{body}</p>
            <div class="dialog-actions">
                <button type="button" class="btn btn-plain" node_ref=dismiss_ref on:click=move |_| on_dismiss.run(())>
                    {dismiss_label}
                </button>
                <button type="button" class="btn btn-danger" node_ref=confirm_ref on:click=move |_| on_confirm.run(())>
                    {confirm_label}
                </button>
            </div>
        </div>
    }
}

/// Notes which element has the focus now and returns a callback that focuses it again.
fn remember_focus() -> Callback<()> {
    #[cfg(feature = "hydrate")]
    {
        use leptos::wasm_bindgen::JsCast;
        use send_wrapper::SendWrapper;

        let before =
            SendWrapper::new(document().active_element().and_then(|el| el.dyn_into::<web_sys::HtmlElement>().ok()));
        Callback::new(move |()| {
            if let Some(el) = &*before {
                // The button that opened the dialog may have been replaced meanwhile
                // (e.g. Pause became Resume); only a node still in the page can take focus.
                if el.is_connected() {
                    let _ = el.focus();
                }
            }
        })
    }
    #[cfg(not(feature = "hydrate"))]
    {
        Callback::new(|()| {})
    }
}
