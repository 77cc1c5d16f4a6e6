//! Full research of one account's website: fetch the homepage and a few same-site
//! pages it links (about, contact), extract what they say about the company, and
//! optionally ask the configured LLM for a profile.

use futures::future::BoxFuture;
use reqwest::header::HeaderMap;
use reqwest::Url;
use scraper::{Html, Node};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, LazyLock};
use tokio::sync::Semaphore;

use super::llm::Llm;
use super::meta::{self, JsonLd, Pick};
use super::net::Http;
use super::page::{fetch_page, Page};
use super::{Step, StepError};
use crate::server::store::types::{reason_parts, Claimed};

/// Visible text kept per page, enough for a profile without flooding the LLM.
const MAX_TEXT_CHARS: usize = 2000;
/// Total text sent to the LLM across the fetched pages.
const MAX_LLM_TEXT_CHARS: usize = 6000;
/// The excerpt stored in the result, so people can see what the site says.
const MAX_EXCERPT_CHARS: usize = 300;
/// Each list kept from a site (e-mails, phones, social profiles): a page of thousands
/// of addresses says no more about a company than its first few.
const MAX_LIST: usize = 25;
const MAX_TECHNOLOGIES: usize = 40;
/// Same-site links kept as candidates for the extra pages.
const MAX_LINKS: usize = 200;
/// Longest title, description and link text kept, in characters.
const MAX_TITLE_CHARS: usize = 300;
const MAX_DESCRIPTION_CHARS: usize = 1000;
const MAX_LINK_TEXT_CHARS: usize = 200;
/// Longer URLs are not profiles or pages anyone links to on purpose.
const MAX_URL_CHARS: usize = 500;

/// The research step; cheap to clone pieces are moved into each item's future.
pub struct ResearchStep {
    http: Http,
    llm: Option<Llm>,
    max_extra_pages: usize,
}

impl ResearchStep {
    /// `max_extra_pages` bounds the same-site pages fetched after the homepage.
    pub fn new(http: Http, llm: Option<Llm>, max_extra_pages: usize) -> Self {
        Self { http, llm, max_extra_pages }
    }
}

impl Step for ResearchStep {
    fn run(&self, item: Claimed) -> BoxFuture<'static, Result<Value, StepError>> {
        let http = self.http.clone();
        let llm = self.llm.clone();
        let max_extra_pages = self.max_extra_pages;
        Box::pin(async move { research(&http, llm.as_ref(), max_extra_pages, &item).await })
    }
}

/// The URL to research: the website column when it is a full http(s) URL, else the
/// website or the domain with `https://` in front. `None` when neither is usable.
pub fn website_url(website: Option<&str>, domain: Option<&str>) -> Option<Url> {
    let website = website.map(str::trim).filter(|s| !s.is_empty());
    if let Some(w) = website {
        if w.contains("://") {
            if let Ok(url) = Url::parse(w) {
                if matches!(url.scheme(), "http" | "https") && url.host().is_some() {
                    return Some(url);
                }
            }
        } else if let Some(url) = bare_url(w) {
            return Some(url);
        }
    }
    domain.map(str::trim).filter(|s| !s.is_empty()).and_then(bare_url)
}

/// `acme.com` or `acme.com/en` as an https URL. Requires something host-like so
/// placeholders such as "n/a" or "none" in a spreadsheet are not fetched.
fn bare_url(s: &str) -> Option<Url> {
    if s.contains("://") || s.chars().any(char::is_whitespace) {
        return None;
    }
    let url = Url::parse(&format!("https://{s}")).ok()?;
    let host_like = match url.host()? {
        url::Host::Domain(d) => d.contains('.') || d == "localhost",
        url::Host::Ipv4(_) | url::Host::Ipv6(_) => true,
    };
    host_like.then_some(url)
}

/// What one page says about the company.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Extracted {
    pub title: Option<String>,
    pub description: Option<String>,
    pub canonical: Option<String>,
    pub language: Option<String>,
    /// Where each of the three came from (see [`meta`]'s orders).
    pub title_source: Option<&'static str>,
    pub description_source: Option<&'static str>,
    pub language_source: Option<&'static str>,
    pub socials: Vec<String>,
    pub emails: Vec<String>,
    pub phones: Vec<String>,
    pub technologies: Vec<String>,
    /// Visible body text, whitespace collapsed, at most about 2,000 characters.
    pub text: String,
    /// Same-site http(s) links with their text, candidates for the extra pages.
    #[serde(skip)]
    pub links: Vec<Link>,
    /// What the lists already hold, so each addition is checked in constant time.
    #[serde(skip)]
    seen: Seen,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Seen {
    emails: HashSet<String>,
    phones: HashSet<String>,
    socials: HashSet<String>,
    links: HashSet<String>,
}

/// Adds `value` to a capped list unless `seen` has it.
fn push_capped(list: &mut Vec<String>, seen: &mut HashSet<String>, key: String, value: String, cap: usize) {
    if list.len() < cap && seen.insert(key) {
        list.push(value);
    }
}

impl Extracted {
    fn add_email(&mut self, email: String) {
        push_capped(&mut self.emails, &mut self.seen.emails, email.clone(), email, MAX_LIST);
    }

    fn add_phone(&mut self, phone: String) {
        push_capped(&mut self.phones, &mut self.seen.phones, phone.clone(), phone, MAX_LIST);
    }

    /// Social links compare loosely, so `https://www.x.com/acme/` and `http://x.com/acme` count once.
    fn add_social(&mut self, url: String) {
        if url.chars().count() <= MAX_URL_CHARS {
            push_capped(&mut self.socials, &mut self.seen.socials, social_key(&url), url, MAX_LIST);
        }
    }

    fn add_link(&mut self, url: Url, text: String) {
        if self.links.len() < MAX_LINKS
            && url.as_str().chars().count() <= MAX_URL_CHARS
            && self.seen.links.insert(page_key(&url))
        {
            self.links.push(Link { url, text: shorten(&text, MAX_LINK_TEXT_CHARS) });
        }
    }
}

/// A link found on a page.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub url: Url,
    pub text: String,
}

const SOCIAL_HOSTS: &[&str] = &[
    "linkedin.com",
    "twitter.com",
    "x.com",
    "facebook.com",
    "instagram.com",
    "youtube.com",
    "github.com",
    "tiktok.com",
];

/// Substrings of script/stylesheet URLs (and inline scripts) that give a technology away.
const ASSET_SIGNATURES: &[(&str, &str)] = &[
    ("googletagmanager.com", "Google Tag Manager"),
    ("google-analytics.com", "Google Analytics"),
    ("cdn.shopify.com", "Shopify"),
    ("js.hs-scripts.com", "HubSpot"),
    ("js.hsforms.net", "HubSpot"),
    ("hubspot", "HubSpot"),
    ("/wp-content/", "WordPress"),
    ("/wp-includes/", "WordPress"),
    ("cdn.jsdelivr.net", "jsDelivr"),
    ("unpkg.com", "unpkg"),
    ("cdnjs.cloudflare.com", "cdnjs"),
    ("static.hotjar.com", "Hotjar"),
    ("js.stripe.com", "Stripe"),
    ("widget.intercom.io", "Intercom"),
    ("intercomcdn.com", "Intercom"),
    ("cdn.segment.com", "Segment"),
    ("/_next/", "Next.js"),
    ("/_nuxt/", "Nuxt"),
    ("react-dom", "React"),
    ("react.production", "React"),
    ("jquery", "jQuery"),
    ("connect.facebook.net", "Facebook Pixel"),
    ("snap.licdn.com", "LinkedIn Insight Tag"),
    ("fonts.googleapis.com", "Google Fonts"),
    ("google.com/recaptcha", "reCAPTCHA"),
    ("static.cloudflareinsights.com", "Cloudflare Web Analytics"),
    ("plausible.io", "Plausible"),
    ("matomo", "Matomo"),
    ("js.driftt.com", "Drift"),
    ("cdn.cookielaw.org", "OneTrust"),
    ("consent.cookiebot.com", "Cookiebot"),
    ("static.wixstatic.com", "Wix"),
    ("squarespace.com", "Squarespace"),
    ("website-files.com", "Webflow"),
];

/// Response headers whose mere presence names the platform in front of the site.
const HEADER_SIGNATURES: &[(&str, &str)] = &[
    ("cf-ray", "Cloudflare"),
    ("x-vercel-id", "Vercel"),
    ("x-nf-request-id", "Netlify"),
    ("x-shopify-stage", "Shopify"),
    ("x-wix-request-id", "Wix"),
    ("x-github-request-id", "GitHub Pages"),
    ("x-amz-cf-id", "Amazon CloudFront"),
    ("x-fastly-request-id", "Fastly"),
];

/// Addresses in visible text. Deliberately plain: the goal is contact addresses
/// people wrote on the page, not RFC 5322.
static EMAIL_RE: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}")
        .expect("valid e-mail pattern")
});

/// Retina asset names (`logo@2x.png`) look like addresses; these endings give them away.
const FILE_ENDINGS: &[&str] =
    &[".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".avif", ".ico", ".bmp", ".css", ".js"];

/// Elements whose text is not shown to a reader.
const HIDDEN: &[&str] = &["script", "style", "noscript", "template", "svg", "head", "iframe", "object"];

/// Elements that flow inside a line; every other element separates words.
const INLINE: &[&str] = &[
    "a", "abbr", "b", "bdi", "bdo", "cite", "code", "data", "dfn", "em", "i", "kbd", "mark", "q", "s", "samp", "small",
    "span", "strong", "sub", "sup", "time", "u", "var", "wbr",
];

/// Headers whose values name the software behind the site.
const VALUE_HEADERS: &[&str] = &["server", "x-powered-by", "x-generator"];

/// Pulls the company facts out of one HTML page. Pure: no I/O, so it is easy to test.
pub fn extract(page_url: &Url, html: &str, headers: &HeaderMap) -> Extracted {
    let doc = Html::parse_document(html);
    let mut out = Extracted::default();
    let mut title = Pick::new(meta::TITLE_SOURCES);
    let mut description = Pick::new(meta::DESCRIPTION_SOURCES);
    let mut language = Pick::new(meta::LANGUAGE_SOURCES);
    let (mut json_ld, mut json_ld_blocks) = (JsonLd::default(), 0);
    // At most about `max` characters of an element's text are gathered: headings and
    // descriptions nest on hostile pages, and each level would copy all below it.
    let text_of = |el: &scraper::ElementRef, max: usize| {
        let mut text = String::new();
        for piece in el.text() {
            text.push_str(piece);
            if text.len() > max * 4 {
                break;
            }
        }
        non_empty(shorten(&collapse(&text), max))
    };

    for el in doc.root_element().descendent_elements() {
        let e = el.value();
        // `itemprop="description"`: a meta's content (below), any other element's text.
        let described = e.attr("itemprop").is_some_and(|p| p.trim().eq_ignore_ascii_case("description"));
        if described && e.name() != "meta" && description.wants("itemprop") {
            description.offer("itemprop", text_of(&el, MAX_DESCRIPTION_CHARS));
        }
        match e.name() {
            "html" => language.offer("html-lang", e.attr("lang").and_then(meta::bcp47)),
            "title" if title.wants("title") => {
                // An <svg><title> is a tooltip, not the page's title.
                let in_svg = el.ancestors().any(|a| a.value().as_element().is_some_and(|p| p.name() == "svg"));
                if !in_svg {
                    title.offer("title", text_of(&el, MAX_TITLE_CHARS));
                }
            }
            "h1" if title.wants("h1") => title.offer("h1", text_of(&el, MAX_TITLE_CHARS)),
            "meta" => {
                let key = e.attr("name").or_else(|| e.attr("property")).unwrap_or("").trim().to_ascii_lowercase();
                let Some(content) =
                    e.attr("content").map(|c| shorten(&collapse(c), MAX_DESCRIPTION_CHARS)).and_then(non_empty)
                else {
                    continue;
                };
                let title_text = || Some(shorten(&content, MAX_TITLE_CHARS));
                match key.as_str() {
                    "description" => description.offer("meta", Some(content.clone())),
                    "og:description" => description.offer("og:description", Some(content.clone())),
                    "twitter:description" => description.offer("twitter:description", Some(content.clone())),
                    "og:title" => title.offer("og:title", title_text()),
                    "twitter:title" => title.offer("twitter:title", title_text()),
                    "og:locale" => language.offer("og:locale", meta::bcp47(&content)),
                    "generator" => push_technology(&mut out.technologies, shorten(&content, 80)),
                    _ => {}
                }
                if described {
                    description.offer("itemprop", Some(content.clone()));
                }
                match e.attr("http-equiv").map(|h| h.trim().to_ascii_lowercase()).as_deref() {
                    Some("description") => description.offer("http-equiv", Some(content)),
                    Some("content-language") => language.offer("content-language", meta::bcp47(&content)),
                    _ => {}
                }
            }
            "link" => {
                let Some(href) = e.attr("href").and_then(|h| page_url.join(h.trim()).ok()) else { continue };
                let rel = e.attr("rel").unwrap_or("").to_ascii_lowercase();
                // Only web addresses are kept: a `javascript:` or `data:` "canonical"
                // would be a link that runs script wherever it is shown or exported.
                if out.canonical.is_none()
                    && rel.split_ascii_whitespace().any(|r| r == "canonical")
                    && matches!(href.scheme(), "http" | "https")
                    && href.as_str().chars().count() <= MAX_URL_CHARS
                {
                    out.canonical = Some(href.to_string());
                }
                asset_technologies(&mut out.technologies, href.as_str());
            }
            "script" if e.attr("type").is_some_and(|t| t.trim().eq_ignore_ascii_case("application/ld+json")) => {
                // Past the bound, blocks are left unread (and are no loader to detect).
                json_ld_blocks += 1;
                if json_ld_blocks <= meta::MAX_JSON_LD_BLOCKS {
                    json_ld.read(&el.text().collect::<String>());
                }
            }
            "script" => match e.attr("src") {
                Some(src) => asset_technologies(&mut out.technologies, &absolute(page_url, src)),
                None => {
                    if e.id() == Some("__NEXT_DATA__") {
                        push_technology(&mut out.technologies, "Next.js".into());
                    }
                    // Inline loaders (the GTM snippet, HubSpot embeds) name their hosts.
                    asset_technologies(&mut out.technologies, &el.text().collect::<String>());
                }
            },
            "img" | "source" | "iframe" => {
                if let Some(src) = e.attr("src") {
                    asset_technologies(&mut out.technologies, &absolute(page_url, src));
                }
            }
            "a" | "area" => {
                if let Some(href) = e.attr("href") {
                    let text = collapse(&el.text().collect::<String>());
                    link_found(&mut out, page_url, href.trim(), text);
                }
            }
            _ => {}
        }
    }
    let header_language = headers.get("content-language").and_then(|v| v.to_str().ok()).and_then(meta::bcp47);
    language.offer("header", header_language);
    let bounded = |v: Option<String>, max: usize| v.map(|s| shorten(&collapse(&s), max)).and_then(non_empty);
    title.offer("json-ld", bounded(json_ld.headline.or(json_ld.name), MAX_TITLE_CHARS));
    description.offer("json-ld", bounded(json_ld.description, MAX_DESCRIPTION_CHARS));
    language.offer("json-ld", json_ld.in_language.as_deref().and_then(meta::bcp47));
    (out.title, out.title_source) = title.into_parts();
    (out.description, out.description_source) = description.into_parts();
    (out.language, out.language_source) = language.into_parts();

    for header in VALUE_HEADERS {
        for value in headers.get_all(*header) {
            if let Some(v) = value.to_str().ok().map(collapse).and_then(non_empty) {
                push_technology(&mut out.technologies, shorten(&v, 80));
            }
        }
    }
    for (header, name) in HEADER_SIGNATURES {
        if headers.contains_key(*header) {
            push_technology(&mut out.technologies, (*name).to_string());
        }
    }

    let text = visible_text(&doc);
    for m in EMAIL_RE.find_iter(&text) {
        if out.emails.len() >= MAX_LIST {
            break;
        }
        if let Some(email) = clean_email(m.as_str()) {
            out.add_email(email);
        }
    }
    out.text = shorten(&text, MAX_TEXT_CHARS);
    out
}

/// Sorts one `<a href>` into e-mails, phones, socials or same-site links.
fn link_found(out: &mut Extracted, page_url: &Url, href: &str, text: String) {
    let lower = href.to_ascii_lowercase();
    if lower.starts_with("mailto:") {
        let addresses = percent_decode(&href["mailto:".len()..]);
        let addresses = addresses.split('?').next().unwrap_or("");
        for address in addresses.split([',', ';']) {
            if let Some(email) = clean_email(address) {
                out.add_email(email);
            }
        }
        return;
    }
    if lower.starts_with("tel:") || lower.starts_with("callto:") {
        let number = href.split_once(':').map_or("", |(_, n)| n);
        if let Some(phone) = normalize_phone(&percent_decode(number)) {
            out.add_phone(phone);
        }
        return;
    }
    let Ok(mut url) = page_url.join(href) else { return };
    if !matches!(url.scheme(), "http" | "https") {
        return;
    }
    url.set_fragment(None);
    if is_social_profile(&url) {
        out.add_social(url.to_string());
    } else if same_site(page_url, &url) {
        out.add_link(url, text);
    }
}

/// A link to a company's own profile on a social network; share buttons and bare
/// network homepages say nothing about the company.
fn is_social_profile(url: &Url) -> bool {
    let host = url.host_str().unwrap_or("").to_ascii_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host);
    if !SOCIAL_HOSTS.iter().any(|d| host == *d || host.ends_with(&format!(".{d}"))) {
        return false;
    }
    let path = url.path().to_ascii_lowercase();
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    !first.is_empty() && !["share", "sharer", "sharer.php", "intent", "dialog", "home"].contains(&first)
}

/// Compares social links loosely, so `https://www.x.com/acme/` and `http://x.com/acme` count once.
fn social_key(url: &str) -> String {
    let lower = url.to_ascii_lowercase();
    let rest = lower.split_once("://").map_or(lower.as_str(), |(_, r)| r);
    let rest = rest.strip_prefix("www.").unwrap_or(rest);
    rest.trim_end_matches('/').to_string()
}

fn host_without_www(url: &Url) -> String {
    let host = url.host_str().unwrap_or("").to_ascii_lowercase();
    host.strip_prefix("www.").map(str::to_string).unwrap_or(host)
}

/// Same site means same host, give or take `www.`, on any port of http(s).
fn same_site(a: &Url, b: &Url) -> bool {
    host_without_www(a) == host_without_www(b)
}

/// What identifies a page, ignoring scheme, `www.`, a trailing slash and the fragment.
fn page_key(url: &Url) -> String {
    format!(
        "{}:{}{}?{}",
        host_without_www(url),
        url.port_or_known_default().unwrap_or(0),
        url.path().trim_end_matches('/'),
        url.query().unwrap_or("")
    )
}

/// Same page ignoring scheme, `www.`, a trailing slash and the fragment.
fn same_page(a: &Url, b: &Url) -> bool {
    page_key(a) == page_key(b)
}

fn clean_email(raw: &str) -> Option<String> {
    let email = raw.trim().trim_end_matches('.').to_lowercase();
    let whole = EMAIL_RE.find(&email).is_some_and(|m| m.start() == 0 && m.end() == email.len());
    (whole && !FILE_ENDINGS.iter().any(|end| email.ends_with(end))).then_some(email)
}

/// Digits with a leading `+` when the number had one: comparable across pages.
fn normalize_phone(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 5 || digits.len() > 20 {
        return None;
    }
    Some(if raw.starts_with('+') { format!("+{digits}") } else { digits })
}

/// Decodes `%xx` escapes (as in `mailto:info%40acme.com` or `tel:+1%20555`).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn absolute(page_url: &Url, src: &str) -> String {
    page_url.join(src.trim()).map(String::from).unwrap_or_else(|_| src.to_string())
}

fn asset_technologies(list: &mut Vec<String>, haystack: &str) {
    let lower = haystack.to_ascii_lowercase();
    for (needle, name) in ASSET_SIGNATURES {
        if lower.contains(needle) {
            push_technology(list, (*name).to_string());
        }
    }
}

/// Adds a technology unless it is already listed, also when already listed with a
/// version ("WordPress 6.4" makes a later "WordPress" redundant). The list is short
/// and capped, so the scan stays cheap.
fn push_technology(list: &mut Vec<String>, name: String) {
    if list.len() >= MAX_TECHNOLOGIES {
        return;
    }
    let lower = name.to_lowercase();
    let known = list.iter().any(|t| {
        let t = t.to_lowercase();
        t == lower || t.starts_with(&format!("{lower} ")) || t.starts_with(&format!("{lower}/"))
    });
    if !known {
        list.push(name);
    }
}

/// The text a reader sees in the body: scripts, styles and the like skipped, block
/// elements separated by a space, whitespace collapsed.
fn visible_text(doc: &Html) -> String {
    let mut text = String::new();
    // `None` marks the end of a block element. An explicit stack instead of recursion,
    // because hostile pages can nest elements very deeply.
    let mut stack = vec![Some(*doc.root_element())];
    while let Some(entry) = stack.pop() {
        let Some(node) = entry else {
            text.push(' ');
            continue;
        };
        match node.value() {
            Node::Text(t) => text.push_str(t),
            Node::Element(e) => {
                if HIDDEN.contains(&e.name()) {
                    continue;
                }
                if !INLINE.contains(&e.name()) {
                    text.push(' ');
                    stack.push(None);
                }
                stack.extend(node.children().rev().map(Some));
            }
            _ => {}
        }
    }
    collapse(&text)
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// At most `max_chars` characters, cut at a character boundary.
fn shorten(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((cut, _)) => s[..cut].trim_end().to_string(),
        None => s.to_string(),
    }
}

/// Which kind of page a same-site link leads to: 0 about-like, 1 contact-like.
fn page_kind(link: &Link) -> Option<u8> {
    const ABOUT: &[&str] = &["about", "company", "team", "ueber", "über", "unternehmen", "apropos", "nosotros"];
    const CONTACT: &[&str] = &["contact", "kontakt", "impressum", "imprint", "contacto", "contatti"];
    let haystack = format!("{} {}", link.url.path(), link.text).to_lowercase();
    let words: Vec<&str> = haystack.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let has = |keys: &[&str]| words.iter().any(|w| keys.iter().any(|k| w.starts_with(k)));
    if has(ABOUT) {
        Some(0)
    } else if has(CONTACT) {
        Some(1)
    } else {
        None
    }
}

fn is_document_file(url: &Url) -> bool {
    const FILES: &[&str] = &[
        ".pdf", ".jpg", ".jpeg", ".png", ".gif", ".svg", ".webp", ".zip", ".doc", ".docx", ".xls", ".xlsx", ".ppt",
        ".pptx", ".mp4", ".mp3",
    ];
    let path = url.path().to_ascii_lowercase();
    FILES.iter().any(|f| path.ends_with(f))
}

/// The extra pages worth fetching: about-like and contact-like links, alternating so
/// that two pages give one of each, never the homepage, each page once.
fn pick_extra_pages(homes: &[&Url], links: &[Link], max: usize) -> Vec<Url> {
    let mut per_kind = [0usize; 2];
    let mut picked: Vec<(usize, u8, Url)> = Vec::new();
    for link in links {
        let url = &link.url;
        if homes.iter().any(|h| same_page(h, url))
            || is_document_file(url)
            || picked.iter().any(|(_, _, u)| same_page(u, url))
        {
            continue;
        }
        let Some(kind) = page_kind(link) else { continue };
        let nth = per_kind[kind as usize];
        if nth >= max {
            continue;
        }
        per_kind[kind as usize] += 1;
        picked.push((nth, kind, url.clone()));
    }
    picked.sort_by_key(|(nth, kind, _)| (*nth, *kind));
    picked.into_iter().take(max).map(|(_, _, u)| u).collect()
}

/// Folds an extra page into the homepage's findings: the homepage's own fields win,
/// the lists are unions.
fn merge(into: &mut Extracted, other: Extracted) {
    if into.title.is_none() {
        (into.title, into.title_source) = (other.title, other.title_source);
    }
    if into.description.is_none() {
        (into.description, into.description_source) = (other.description, other.description_source);
    }
    if into.language.is_none() {
        (into.language, into.language_source) = (other.language, other.language_source);
    }
    for s in other.socials {
        into.add_social(s);
    }
    for e in other.emails {
        into.add_email(e);
    }
    for p in other.phones {
        into.add_phone(p);
    }
    for t in other.technologies {
        push_technology(&mut into.technologies, t);
    }
}

fn page_entry(url: &Url, status: Option<u16>, error: Option<&StepError>) -> Value {
    // The line people read; an error's detail stays with the account's own error.
    json!({"url": url.as_str(), "statusCode": status, "error": error.map(|e| reason_parts(&e.to_string()).0.to_string())})
}

/// Parsing a big page is seconds of CPU: pages are parsed on the blocking pool, at
/// most one per spare core at a time, so status reads, controls and other items'
/// network work never wait behind a hostile page.
static PARSERS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Arc::new(Semaphore::new(cores.saturating_sub(1).max(1)))
});

/// [`extract`], off the async threads.
async fn extract_page(page: Page) -> Result<Extracted, StepError> {
    let permit = PARSERS.clone().acquire_owned().await.map_err(|_| StepError::Permanent("shutting down".into()))?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        extract(&page.final_url, &page.html, &page.headers)
    })
    .await
    .map_err(|e| StepError::Permanent(format!("internal error: the page parser failed: {e}")))
}

async fn research(http: &Http, llm: Option<&Llm>, max_extra_pages: usize, item: &Claimed) -> Result<Value, StepError> {
    let website = item.website.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let domain = item.domain.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let Some(given) = website.or(domain) else {
        // A name alone (SPEC section 6): with an LLM endpoint, what it knows of the
        // company by its name; there is no page to read.
        let name = item.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
        return match (llm, name) {
            (Some(llm), Some(name)) => {
                let profile = llm.profile(Some(name), NO_WEBSITE_TEXT).await?;
                Ok(json!({
                    "url": null,
                    "finalUrl": null,
                    "statusCode": null,
                    "title": null,
                    "description": null,
                    "socials": [],
                    "emails": [],
                    "phones": [],
                    "technologies": [],
                    "pages": [],
                    "profile": profile,
                    "profileError": null,
                    "profileFrom": "name",
                }))
            }
            _ => Err(StepError::Permanent("no website or domain to research".into())),
        };
    };
    let url = website_url(website, domain)
        .ok_or_else(|| StepError::Permanent(format!("`{given}` is not a usable website URL or domain")))?;

    let home = fetch_page(http, &url).await.map_err(|f| f.error)?;
    let (home_url, home_status) = (home.final_url.clone(), home.status);
    let mut found = extract_page(home).await?;
    let mut pages = vec![page_entry(&url, Some(home_status), None)];
    let mut texts = vec![std::mem::take(&mut found.text)];

    let extras = pick_extra_pages(&[&url, &home_url], &found.links, max_extra_pages);
    // Concurrently, and dropped together if the job is cancelled.
    let fetched = futures::future::join_all(extras.iter().map(|u| fetch_page(http, u))).await;
    for (extra_url, result) in extras.iter().zip(fetched) {
        match result {
            Ok(page) => {
                pages.push(page_entry(extra_url, Some(page.status), None));
                let mut more = extract_page(page).await?;
                texts.push(std::mem::take(&mut more.text));
                merge(&mut found, more);
            }
            // Best effort: a broken about page says nothing against the account.
            Err(f) => pages.push(page_entry(extra_url, f.status, Some(&f.error))),
        }
    }

    let (profile, profile_error) = match llm {
        None => (Value::Null, Value::Null),
        Some(llm) => {
            let text = llm_text(&found, &texts);
            if text.is_empty() {
                (Value::Null, Value::String("the website has no text to profile".into()))
            } else {
                match llm.profile(item.name.as_deref(), &text).await {
                    Ok(profile) => (profile, Value::Null),
                    // The research itself is still worth keeping.
                    Err(StepError::Permanent(reason)) => {
                        (Value::Null, Value::String(reason_parts(&reason).0.to_string()))
                    }
                    // Rate limits pause the job; transient failures retry the item.
                    Err(e) => return Err(e),
                }
            }
        }
    };

    Ok(json!({
        "url": url.as_str(),
        "finalUrl": home_url.as_str(),
        "statusCode": home_status,
        "title": found.title,
        "titleSource": found.title_source,
        "description": found.description,
        "descriptionSource": found.description_source,
        "canonical": found.canonical,
        "language": found.language,
        "languageSource": found.language_source,
        "socials": found.socials,
        "emails": found.emails,
        "phones": found.phones,
        "technologies": found.technologies,
        "excerpt": shorten(&texts[0], MAX_EXCERPT_CHARS),
        "pages": pages,
        "profile": profile,
        "profileError": profile_error,
    }))
}

/// The website text the LLM is given for an account known by its name alone.
const NO_WEBSITE_TEXT: &str = "(none: no website was given; answer from what is known of the company by its name)";

/// What the LLM reads: title and description first, since they are the site's own
/// summary, then the visible text of each page, bounded.
fn llm_text(found: &Extracted, texts: &[String]) -> String {
    let mut parts = Vec::new();
    if let Some(t) = &found.title {
        parts.push(format!("Title: {t}"));
    }
    if let Some(d) = &found.description {
        parts.push(format!("Description: {d}"));
    }
    parts.extend(texts.iter().filter(|t| !t.is_empty()).cloned());
    shorten(&parts.join("\n\n"), MAX_LLM_TEXT_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::config::LlmConfig;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::response::{Html as HtmlBody, IntoResponse};
    use axum::routing::{get, post};
    use axum::Router;
    use reqwest::header::HeaderValue;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    const FIXTURE: &str = r#"<!DOCTYPE html>
<html lang="en-GB">
<head>
  <meta charset="utf-8">
  <title>
     Acme Anvils  |  Since 1949
  </title>
  <meta name="description" content="Acme makes  anvils for   coyotes.">
  <meta property="og:description" content="OpenGraph text that loses to the meta description">
  <meta name="generator" content="WordPress 6.4">
  <link rel="canonical" href="/en/">
  <link rel="stylesheet" href="/wp-content/themes/acme/style.css">
  <script async src="https://www.googletagmanager.com/gtag/js?id=G-TEST123"></script>
  <style>.hidden { color: red; } /* style@example.com */</style>
</head>
<body>
  <header><img src="/img/logo@2x.png" alt="logo"> Acme</header>
  <main>
    <h1>Anvils for every canyon</h1>
    <p>Questions? Write to <a href="mailto:Sales@Acme.example?subject=Hi">our sales team</a>
       or to Support@acme.example. Retina logo: logo@2x.png</p>
    <p>Call <a href="tel:+1 (555) 010-2030">+1 555 010 2030</a>.</p>
    <a href="/about-us">About us</a>
    <a href="https://www.linkedin.com/company/acme-anvils/">LinkedIn</a>
    <a href="https://twitter.com/acme">Twitter</a>
    <a href="https://twitter.com/acme/">Twitter again</a>
    <a href="https://twitter.com/intent/tweet?text=hi">Share</a>
    <a href="https://www.facebook.com/sharer/sharer.php?u=https%3A%2F%2Facme.example">Share on Facebook</a>
    <a href="https://www.youtube.com/">YouTube home</a>
  </main>
  <script>var hidden = "script@example.com";</script>
</body>
</html>"#;

    fn page_url() -> Url {
        Url::parse("https://www.acme.example/home/index.html").unwrap()
    }

    #[test]
    fn extracts_every_field_from_a_realistic_page() {
        let mut headers = HeaderMap::new();
        headers.insert("server", HeaderValue::from_static("nginx/1.25.3"));
        headers.insert("x-powered-by", HeaderValue::from_static("PHP/8.2.12"));
        let ex = extract(&page_url(), FIXTURE, &headers);

        assert_eq!(ex.title.as_deref(), Some("Acme Anvils | Since 1949"));
        assert_eq!(ex.description.as_deref(), Some("Acme makes anvils for coyotes."));
        assert_eq!(ex.canonical.as_deref(), Some("https://www.acme.example/en/"));
        assert_eq!(ex.language.as_deref(), Some("en-GB"));
        assert_eq!(
            ex.socials,
            vec!["https://www.linkedin.com/company/acme-anvils/".to_string(), "https://twitter.com/acme".to_string()]
        );
        // mailto first (query dropped), then the plain-text one; the image name and the
        // addresses inside <style>/<script> are not contacts.
        assert_eq!(ex.emails, vec!["sales@acme.example".to_string(), "support@acme.example".to_string()]);
        assert_eq!(ex.phones, vec!["+15550102030".to_string()]);
        assert_eq!(
            ex.technologies,
            vec!["WordPress 6.4", "Google Tag Manager", "nginx/1.25.3", "PHP/8.2.12"]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()
        );
        assert!(ex.text.starts_with("Acme Anvils for every canyon Questions? Write to our sales team"), "{}", ex.text);
        assert!(!ex.text.contains("color: red") && !ex.text.contains("var hidden"), "{}", ex.text);
        assert_eq!(ex.links.len(), 1);
        assert_eq!(ex.links[0].url.as_str(), "https://www.acme.example/about-us");
        assert_eq!(ex.links[0].text, "About us");

        let json = serde_json::to_value(&ex).unwrap();
        assert!(json.get("technologies").is_some() && json.get("links").is_none());
    }

    #[test]
    fn a_canonical_that_is_not_a_web_address_is_not_kept() {
        for href in
            ["javascript:alert(document.cookie)", "JavaScript:alert(1)", "data:text/html,<b>x</b>", "ftp://x.example/"]
        {
            let html = format!(r#"<html><head><link rel="canonical" href="{href}"></head><body>Hi</body></html>"#);
            let ex = extract(&page_url(), &html, &HeaderMap::new());
            assert_eq!(ex.canonical, None, "{href}");
        }
        let html = r#"<html><head><link rel="canonical" href="javascript:void(0)"><link rel="canonical" href="/en/"></head></html>"#;
        let ex = extract(&page_url(), html, &HeaderMap::new());
        assert_eq!(ex.canonical.as_deref(), Some("https://www.acme.example/en/"), "the first web address is kept");
    }

    /// Each fallback alone on a page, then every source at once: the first in the order
    /// wins; a broken JSON-LD block is skipped and the next one read.
    #[test]
    fn title_description_and_language_fall_back_in_order() {
        let ld = |json: &str| format!(r#"<script type="application/ld+json">{json}</script>"#);
        let page = |head: &str, body: &str| format!("<html><head>{head}</head><body>{body}</body></html>");
        let title_cases = [
            (page("<title> Acme &amp; Co </title>", ""), "Acme & Co", "title"),
            (page(r#"<title></title><meta property="og:title" content="From OG">"#, ""), "From OG", "og:title"),
            (page(r#"<meta name="twitter:title" content="From  Twitter">"#, ""), "From Twitter", "twitter:title"),
            (page(&ld(r#"{"@type": "WebPage", "headline": "From JSON-LD"}"#), ""), "From JSON-LD", "json-ld"),
            (page(&ld(r#"{"@graph": [{"@type": "Organization", "name": "Acme GmbH"}]}"#), ""), "Acme GmbH", "json-ld"),
            (page("", "<h1>First <em>heading</em></h1><h1>Second</h1>"), "First heading", "h1"),
        ];
        for (html, want, source) in title_cases {
            let ex = extract(&page_url(), &html, &HeaderMap::new());
            assert_eq!((ex.title.as_deref(), ex.title_source), (Some(want), Some(source)), "{html}");
        }
        let description_cases = [
            (page(r#"<meta name="description" content="Plain">"#, ""), "Plain", "meta"),
            (page(r#"<meta property="og:description" content="OG">"#, ""), "OG", "og:description"),
            (page(r#"<meta name="twitter:description" content="Tw">"#, ""), "Tw", "twitter:description"),
            (page(r#"<meta itemprop="description" content="Micro">"#, ""), "Micro", "itemprop"),
            (page("", r#"<p itemprop="description">Micro  text</p>"#), "Micro text", "itemprop"),
            (page(r#"<meta http-equiv="description" content="Equiv">"#, ""), "Equiv", "http-equiv"),
            (page(&ld(r#"[{"@type": "Organization", "description": "LD"}]"#), ""), "LD", "json-ld"),
        ];
        for (html, want, source) in description_cases {
            let ex = extract(&page_url(), &html, &HeaderMap::new());
            assert_eq!((ex.description.as_deref(), ex.description_source), (Some(want), Some(source)), "{html}");
        }
        let mut header = HeaderMap::new();
        header.insert("content-language", HeaderValue::from_static("de-de, en"));
        let language_cases = [
            (page("", "").replace("<html>", r#"<html lang="en_gb">"#), HeaderMap::new(), "en-GB", "html-lang"),
            (page(r#"<meta property="og:locale" content="en_US">"#, ""), HeaderMap::new(), "en-US", "og:locale"),
            (
                page(r#"<meta http-equiv="content-language" content="fr">"#, ""),
                HeaderMap::new(),
                "fr",
                "content-language",
            ),
            (page("", ""), header.clone(), "de-DE", "header"),
            (page(&ld(r#"{"inLanguage": "pt-br"}"#), ""), HeaderMap::new(), "pt-BR", "json-ld"),
        ];
        for (html, headers, want, source) in language_cases {
            let ex = extract(&page_url(), &html, &headers);
            assert_eq!((ex.language.as_deref(), ex.language_source), (Some(want), Some(source)), "{html}");
        }

        // A broken block is skipped, never an error; the one after it is read.
        let broken = page(&format!("{}{}", ld(r#"{"headline": "#), ld(r#"{"headline": "Whole"}"#)), "");
        let ex = extract(&page_url(), &broken, &HeaderMap::new());
        assert_eq!((ex.title.as_deref(), ex.title_source), (Some("Whole"), Some("json-ld")));

        // Every source at once, in the reverse of the order: the first in the order wins.
        let all = format!(
            r#"<html lang="nl"><head>{}<meta http-equiv="description" content="equiv">
            <meta http-equiv="content-language" content="fr"><meta itemprop="description" content="micro">
            <meta name="twitter:description" content="tw"><meta name="twitter:title" content="tw title">
            <meta property="og:description" content="og"><meta property="og:title" content="og title">
            <meta property="og:locale" content="en_US"><meta name="description" content="meta">
            <title>The title</title></head><body><h1>Heading</h1></body></html>"#,
            ld(r#"{"headline": "ld", "description": "ld", "inLanguage": "es"}"#)
        );
        let ex = extract(&page_url(), &all, &header);
        assert_eq!((ex.title.as_deref(), ex.title_source), (Some("The title"), Some("title")));
        assert_eq!((ex.description.as_deref(), ex.description_source), (Some("meta"), Some("meta")));
        assert_eq!((ex.language.as_deref(), ex.language_source), (Some("nl"), Some("html-lang")));
    }

    /// Headings and described elements nested thousands deep, each level with text: the
    /// first of each is read, at most its field's length, not every level's whole text.
    #[test]
    fn nested_headings_and_descriptions_give_the_first_bounded() {
        let depth = 3_000;
        let mut html = String::from("<html><body>");
        for i in 0..depth {
            html.push_str(&format!("<h1><div itemprop=description>level {i} {}", "word ".repeat(100)));
        }
        for _ in 0..depth {
            html.push_str("</div></h1>");
        }
        let ex = extract(&page_url(), &html, &HeaderMap::new());
        let title = ex.title.unwrap();
        assert!(title.starts_with("level 0 word") && title.chars().count() <= MAX_TITLE_CHARS, "{title}");
        assert_eq!(ex.title_source, Some("h1"));
        let description = ex.description.unwrap();
        assert!(description.starts_with("level 0 word") && description.chars().count() <= MAX_DESCRIPTION_CHARS);
        assert_eq!(ex.description_source, Some("itemprop"));
    }

    #[test]
    fn og_description_and_header_signatures() {
        let html = r#"<html><head><meta property="og:description" content="From OpenGraph">
            <script src="/_next/static/chunks/main.js"></script></head><body>Hi</body></html>"#;
        let mut headers = HeaderMap::new();
        headers.insert("cf-ray", HeaderValue::from_static("8a1b2c3d4e5f-AMS"));
        headers.insert("server", HeaderValue::from_static("cloudflare"));
        let ex = extract(&page_url(), html, &headers);
        assert_eq!(ex.description.as_deref(), Some("From OpenGraph"));
        assert_eq!(ex.title, None);
        assert_eq!(ex.language, None);
        assert_eq!(ex.canonical, None);
        // "cloudflare" from Server and "Cloudflare" from cf-ray are one technology.
        assert_eq!(ex.technologies, vec!["Next.js".to_string(), "cloudflare".to_string()]);
        assert_eq!(ex.text, "Hi");
    }

    #[test]
    fn text_excerpt_is_bounded() {
        let html = format!("<html><body><p>{}</p></body></html>", "word ".repeat(2000));
        let ex = extract(&page_url(), &html, &HeaderMap::new());
        assert!(ex.text.chars().count() <= MAX_TEXT_CHARS);
        assert!(ex.text.chars().count() > MAX_TEXT_CHARS - 10);
    }

    #[test]
    fn website_url_cases() {
        let u = |w: Option<&str>, d: Option<&str>| website_url(w, d).map(|u| u.to_string());
        assert_eq!(u(Some("https://acme.com:8443/path"), None).as_deref(), Some("https://acme.com:8443/path"));
        assert_eq!(u(Some("http://acme.com/en/?a=1"), Some("other.com")).as_deref(), Some("http://acme.com/en/?a=1"));
        assert_eq!(u(Some("acme.com"), None).as_deref(), Some("https://acme.com/"));
        assert_eq!(u(Some(" www.acme.com/de "), None).as_deref(), Some("https://www.acme.com/de"));
        assert_eq!(u(None, Some("acme.com")).as_deref(), Some("https://acme.com/"));
        assert_eq!(u(Some("  "), Some("acme.com")).as_deref(), Some("https://acme.com/"));
        assert_eq!(u(Some("n/a"), Some("acme.com")).as_deref(), Some("https://acme.com/"));
        assert_eq!(u(Some("ftp://acme.com/"), None), None);
        assert_eq!(u(Some("not a url"), None), None);
        assert_eq!(u(None, None), None);
    }

    #[test]
    fn extra_pages_prefer_about_then_contact() {
        let home = Url::parse("https://acme.example/").unwrap();
        let link = |path: &str, text: &str| Link { url: home.join(path).unwrap(), text: text.into() };
        let links = vec![
            link("/", "Home"),
            link("/contact", "Get in touch"),
            link("/products", "Products"),
            link("/team", "Our people"),
            link("/info", "About us"),
            link("/contact/", "Contact again"),
            link("/about/brochure.pdf", "About (PDF)"),
            link("/impressum", "Impressum"),
        ];
        let picked: Vec<String> = pick_extra_pages(&[&home], &links, 3).iter().map(|u| u.path().to_string()).collect();
        assert_eq!(picked, vec!["/team", "/contact", "/info"]);
        assert!(pick_extra_pages(&[&home], &links, 0).is_empty());
    }

    // ---- against real HTTP servers ----

    #[derive(Clone, Default)]
    struct Site {
        hits: Arc<AtomicUsize>,
    }

    async fn count(
        State(site): State<Site>,
        request: axum::extract::Request,
        next: axum::middleware::Next,
    ) -> axum::response::Response {
        site.hits.fetch_add(1, Ordering::SeqCst);
        next.run(request).await
    }

    const HOME: &str = r#"<!doctype html><html lang="en"><head><title>Acme Test Site</title>
        <meta name="description" content="We test things."></head>
        <body><h1>Welcome to Acme</h1>
        <a href="/about">About</a> <a href="/contact">Contact us</a> <a href="/products">Products</a>
        <a href="https://example.org/about">Someone else's about page</a>
        <a href="https://github.com/acme">GitHub</a></body></html>"#;

    fn site_router(site: Site) -> Router {
        Router::new()
            .route("/", get(|| async { HtmlBody(HOME) }))
            .route("/about", get(|| async { HtmlBody("<html><body><p>Founded in 1949. Press: press@acme.test</p></body></html>") }))
            .route(
                "/contact",
                get(|| async {
                    HtmlBody(r#"<html><body><a href="mailto:hello@acme.test">Mail</a> <a href="tel:+49 30 1234567">Call</a></body></html>"#)
                }),
            )
            .route("/products", get(|| async { HtmlBody("<html><body>Products</body></html>") }))
            .route(
                "/broken",
                get(|| async { HtmlBody(r#"<html><body><title>Broken</title><a href="/team">Team</a><a href="/contact">Contact</a></body></html>"#) }),
            )
            .route("/team", get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "oops") }))
            .route("/down", get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "maintenance") }))
            .route("/missing", get(|| async { (StatusCode::NOT_FOUND, "no such page") }))
            .route("/data", get(|| async { axum::Json(serde_json::json!({"not": "html"})) }))
            .route("/loop", get(|| async { axum::response::Redirect::to("/loop") }))
            .route(
                "/slow-hop/{n}",
                get(|axum::extract::Path(n): axum::extract::Path<u32>| async move {
                    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
                    match n {
                        0 => axum::response::Redirect::to("/"),
                        n => axum::response::Redirect::to(&format!("/slow-hop/{}", n - 1)),
                    }
                }),
            )
            .route("/moved", get(|| async { axum::response::Redirect::permanent("/about") }))
            .layer(axum::middleware::from_fn_with_state(site.clone(), count))
            .with_state(site)
    }

    async fn spawn(app: Router) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    async fn spawn_site() -> (String, Site) {
        let site = Site::default();
        let addr = spawn(site_router(site.clone())).await;
        (format!("http://{addr}"), site)
    }

    fn http(allow_private: bool) -> Http {
        Http::build(Duration::from_secs(2), "jobdeck-test", allow_private, 1 << 20).unwrap()
    }

    fn claimed(website: Option<&str>, domain: Option<&str>) -> Claimed {
        Claimed {
            id: 1,
            line: 2,
            name: Some("Acme".into()),
            website: website.map(String::from),
            domain: domain.map(String::from),
            input: serde_json::Map::new(),
            normalized: None,
            duplicate_of: None,
        }
    }

    #[tokio::test]
    async fn researches_homepage_and_about_and_contact() {
        let (base, site) = spawn_site().await;
        let step = ResearchStep::new(http(true), None, 2);
        let result = step.run(claimed(Some(&format!("{base}/")), None)).await.unwrap();

        assert_eq!(result["url"], format!("{base}/"));
        assert_eq!(result["finalUrl"], format!("{base}/"));
        assert_eq!(result["statusCode"], 200);
        assert_eq!(result["title"], "Acme Test Site");
        assert_eq!(result["description"], "We test things.");
        assert_eq!(result["language"], "en");
        assert_eq!(result["canonical"], Value::Null);
        assert_eq!(result["socials"], json!(["https://github.com/acme"]));
        assert_eq!(result["emails"], json!(["press@acme.test", "hello@acme.test"]));
        assert_eq!(result["phones"], json!(["+49301234567"]));
        assert_eq!(result["technologies"], json!([]));
        let pages = result["pages"].as_array().unwrap();
        assert_eq!(pages.len(), 3);
        assert_eq!(pages[0], json!({"url": format!("{base}/"), "statusCode": 200, "error": null}));
        assert_eq!(pages[1], json!({"url": format!("{base}/about"), "statusCode": 200, "error": null}));
        assert_eq!(pages[2], json!({"url": format!("{base}/contact"), "statusCode": 200, "error": null}));
        assert_eq!(result["profile"], Value::Null);
        assert_eq!(result["profileError"], Value::Null);
        assert!(result["excerpt"].as_str().unwrap().starts_with("Welcome to Acme"));
        // robots.txt (none: a 404), homepage, about, contact: the products page and the
        // external link were not fetched.
        assert_eq!(site.hits.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn broken_extra_page_is_recorded_not_fatal() {
        let (base, _site) = spawn_site().await;
        let step = ResearchStep::new(http(true), None, 5);
        let result = step.run(claimed(Some(&format!("{base}/broken")), None)).await.unwrap();
        let pages = result["pages"].as_array().unwrap();
        assert_eq!(pages.len(), 3, "{pages:?}");
        assert_eq!(pages[1]["url"], format!("{base}/team"));
        assert_eq!(pages[1]["statusCode"], 500);
        assert_eq!(pages[1]["error"], format!("HTTP 500 from {base}/team"));
        assert_eq!(pages[2]["error"], Value::Null);
        assert_eq!(result["emails"], json!(["hello@acme.test"]));
    }

    #[tokio::test]
    async fn website_errors_are_classified() {
        let (base, _site) = spawn_site().await;
        let step = ResearchStep::new(http(true), None, 2);
        let down = step.run(claimed(Some(&format!("{base}/down")), None)).await;
        assert_eq!(down, Err(StepError::Transient(format!("HTTP 503 from {base}/down"))));
        let missing = step.run(claimed(Some(&format!("{base}/missing")), None)).await;
        assert_eq!(missing, Err(StepError::Permanent(format!("HTTP 404 from {base}/missing"))));
        let data = step.run(claimed(Some(&format!("{base}/data")), None)).await;
        assert!(matches!(data, Err(StepError::Permanent(ref r)) if r.contains("not an HTML page")), "{data:?}");
        let nothing = step.run(claimed(None, Some("  "))).await;
        assert_eq!(nothing, Err(StepError::Permanent("no website or domain to research".into())));
        // Five hops of 0.6 s each: each within the 2 s limit, together past it.
        let slow = step.run(claimed(Some(&format!("{base}/slow-hop/4")), None)).await;
        assert!(matches!(slow, Err(StepError::Transient(ref r)) if r.contains("timed out")), "{slow:?}");
        let endless = step.run(claimed(Some(&format!("{base}/loop")), None)).await;
        assert_eq!(endless, Err(StepError::Permanent(format!("{base}/loop: more than 5 redirects"))));
        let moved = step.run(claimed(Some(&format!("{base}/moved")), None)).await.unwrap();
        assert_eq!(
            (moved["url"].as_str(), moved["finalUrl"].as_str()),
            (Some(&*format!("{base}/moved")), Some(&*format!("{base}/about")))
        );
    }

    #[tokio::test]
    async fn a_refused_connection_fails_at_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let step = ResearchStep::new(http(true), None, 2);
        let result = step.run(claimed(Some(&format!("http://{addr}/")), None)).await;
        assert!(matches!(result, Err(StepError::Permanent(ref r)) if r.contains("refused")), "{result:?}");
    }

    #[tokio::test]
    async fn private_targets_are_refused_without_a_request() {
        let (base, site) = spawn_site().await;
        let step = ResearchStep::new(http(false), None, 2);
        let result = step.run(claimed(Some(&format!("{base}/")), None)).await;
        assert!(matches!(result, Err(StepError::Permanent(ref r)) if r.contains("private address")), "{result:?}");
        assert_eq!(site.hits.load(Ordering::SeqCst), 0);
    }

    /// A chat-completions endpoint answering with `status` and `body`.
    async fn spawn_llm(status: StatusCode, body: &'static str) -> Llm {
        let app = Router::new().route("/chat/completions", post(move || async move { (status, body).into_response() }));
        let addr = spawn(app).await;
        let cfg = LlmConfig { base_url: format!("http://{addr}/"), api_key: "k".into(), model: "m".into() };
        Llm::new(&cfg, Duration::from_secs(2)).unwrap()
    }

    #[tokio::test]
    async fn profile_from_llm_is_stored() {
        let (base, _site) = spawn_site().await;
        let llm = spawn_llm(
            StatusCode::OK,
            r#"{"choices":[{"message":{"role":"assistant","content":"{\"summary\":\"Tests things.\",\"industry\":\"Software\",\"sizeRange\":\"1-10\",\"country\":null,\"fitNotes\":\"\"}"}}]}"#,
        )
        .await;
        let step = ResearchStep::new(http(true), Some(llm), 2);
        let result = step.run(claimed(Some(&format!("{base}/")), None)).await.unwrap();
        assert_eq!(result["profile"]["summary"], "Tests things.");
        assert_eq!(result["profile"]["industry"], "Software");
        assert_eq!(result["profileError"], Value::Null);
        assert_eq!(result["title"], "Acme Test Site");
    }

    #[tokio::test]
    async fn a_name_alone_is_profiled_by_the_llm_without_a_request_to_any_site() {
        let llm = spawn_llm(
            StatusCode::OK,
            r#"{"choices":[{"message":{"role":"assistant","content":"{\"summary\":\"Makes anvils.\",\"industry\":\"Manufacturing\",\"sizeRange\":null,\"country\":null,\"fitNotes\":\"\"}"}}]}"#,
        )
        .await;
        let result = ResearchStep::new(http(true), Some(llm), 2).run(claimed(None, None)).await.unwrap();
        assert_eq!(result["profile"]["industry"], "Manufacturing");
        assert_eq!((result["profileFrom"].as_str(), result["url"].as_str()), (Some("name"), None));
        // Without an endpoint a name alone cannot be researched.
        let without = ResearchStep::new(http(true), None, 2).run(claimed(None, None)).await;
        assert_eq!(without, Err(StepError::Permanent("no website or domain to research".into())));
    }

    #[tokio::test]
    async fn llm_failures_keep_research_or_propagate() {
        let (base, _site) = spawn_site().await;
        let website = format!("{base}/");

        let bad = spawn_llm(StatusCode::OK, r#"{"choices":[{"message":{"content":"no idea"}}]}"#).await;
        let result = ResearchStep::new(http(true), Some(bad), 0).run(claimed(Some(&website), None)).await.unwrap();
        assert_eq!(result["profile"], Value::Null);
        assert!(result["profileError"].as_str().unwrap().contains("not valid JSON"), "{result}");
        assert_eq!(result["title"], "Acme Test Site");

        let limited = spawn_llm(StatusCode::TOO_MANY_REQUESTS, "quota").await;
        let result = ResearchStep::new(http(true), Some(limited), 0).run(claimed(Some(&website), None)).await;
        assert!(
            matches!(result, Err(StepError::RateLimited { retry_after, .. }) if retry_after == Duration::from_secs(60)),
            "{result:?}"
        );

        let failing = spawn_llm(StatusCode::BAD_GATEWAY, "upstream").await;
        let result = ResearchStep::new(http(true), Some(failing), 0).run(claimed(Some(&website), None)).await;
        assert!(matches!(result, Err(StepError::Transient(_))), "{result:?}");
    }
}
