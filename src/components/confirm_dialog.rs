//! A confirmation asked inside the page, for the actions that cannot be undone.

use leptos::ev::KeyboardEvent;
use leptos::html;
use leptos::prelude::*;

/// A modal question with a confirm and a dismiss button.
///
/// The keyboard focus starts on the dismiss button (the safe choice), so Enter keeps
/// things as they are until Tab moves to the confirm button; Enter on a button or link
/// presses it, Enter anywhere else in the dialog confirms, and Escape, the dismiss
/// button and a click on the backdrop all dismiss. Tab and Shift+Tab move between its
/// buttons and links and never leave it; the focus goes back to where it was when it
/// closes. The caller owns the open/closed state, in a signal that no
/// refresh touches, so new data never closes an open dialog.
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
    /// More content under the text (the delete dialog's export links).
    #[prop(optional)]
    children: Option<Children>,
) -> impl IntoView {
    let dialog_ref = NodeRef::<html::Div>::new();
    let dismiss_ref = NodeRef::<html::Button>::new();
    let restore_focus = remember_focus();

    Effect::new(move |_| {
        if let Some(button) = dismiss_ref.get() {
            let _ = button.focus();
        }
    });
    on_cleanup(move || restore_focus.run(()));

    let on_keydown = move |ev: KeyboardEvent| match ev.key().as_str() {
        "Escape" => {
            ev.prevent_default();
            on_dismiss.run(());
        }
        "Enter" => {
            let on_control =
                document().active_element().is_some_and(|el| matches!(el.tag_name().as_str(), "BUTTON" | "A"));
            if !on_control {
                ev.prevent_default();
                on_confirm.run(());
            }
        }
        "Tab" => {
            ev.prevent_default();
            cycle_focus(dialog_ref, ev.shift_key());
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
            tabindex="-1"
            node_ref=dialog_ref
            on:keydown=on_keydown
        >
            <h2 id="confirm-title">{title}</h2>
            <p id="confirm-body">{body}</p>
            {children.map(|c| c())}
            <div class="dialog-actions">
                <button type="button" class="btn btn-plain" node_ref=dismiss_ref on:click=move |_| on_dismiss.run(())>
                    {dismiss_label}
                </button>
                <button type="button" class="btn btn-danger" on:click=move |_| on_confirm.run(())>
                    {confirm_label}
                </button>
            </div>
        </div>
    }
}

/// Moves the focus to the next (or previous) button or link inside the dialog,
/// wrapping around.
fn cycle_focus(dialog: NodeRef<html::Div>, back: bool) {
    #[cfg(feature = "hydrate")]
    {
        use leptos::wasm_bindgen::JsCast;

        let Some(dialog) = dialog.get_untracked() else { return };
        let Ok(list) = dialog.query_selector_all("button, a[href]") else { return };
        let items: Vec<web_sys::HtmlElement> =
            (0..list.length()).filter_map(|i| list.item(i)?.dyn_into::<web_sys::HtmlElement>().ok()).collect();
        if items.is_empty() {
            return;
        }
        let active = document().active_element();
        let at = items.iter().position(|el| active.as_ref().is_some_and(|a| a == el.as_ref() as &web_sys::Element));
        let next = match (at, back) {
            (None, false) => 0,
            (None, true) => items.len() - 1,
            (Some(i), false) => (i + 1) % items.len(),
            (Some(i), true) => (i + items.len() - 1) % items.len(),
        };
        let _ = items[next].focus();
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (dialog, back);
}

/// Notes which element has the focus now and returns a callback that focuses it again.
pub(crate) fn remember_focus() -> Callback<()> {
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
