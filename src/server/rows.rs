//! The rules of one CSV row, pure and shared: which column plays which role (found by
//! header name), and how a row is cleaned (company name, legal suffix, website,
//! domain, e-mail, free-mail, dedupe key). Import, the steps and both stores use them;
//! this module imports nothing of the project.

use serde_json::Value;
use std::net::Ipv4Addr;

/// Which input column plays which role, found by header name. A research job keeps
/// its map (`roles`) and reads its items' name, website and domain through it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ColumnMap {
    pub name: Option<usize>,
    pub website: Option<usize>,
    pub domain: Option<usize>,
    pub email: Option<usize>,
}

const NAME_WORDS: &[&str] = &[
    "company",
    "company name",
    "companyname",
    "account",
    "account name",
    "accountname",
    "organization",
    "organisation",
    "organization name",
    "organisation name",
    "org",
    "org name",
    "business",
    "business name",
    "name",
    "employer",
    "firm",
    // German, French and Spanish (SPEC section 16).
    "firma",
    "firmenname",
    "unternehmen",
    "unternehmensname",
    "entreprise",
    "nom de l'entreprise",
    "société",
    "societe",
    "raison sociale",
    "empresa",
    "nombre de la empresa",
    "compañía",
    "compania",
];
const WEBSITE_WORDS: &[&str] = &[
    "website",
    "web site",
    "url",
    "homepage",
    "home page",
    "web",
    "site",
    "website url",
    "company website",
    "company url",
    "web address",
    "www",
    "webseite",
    "internetseite",
    "internetadresse",
    "site web",
    "site internet",
    "sitio web",
    "página web",
    "pagina web",
];
const DOMAIN_WORDS: &[&str] =
    &["domain", "company domain", "website domain", "domain name", "email domain", "domaine", "dominio"];
const EMAIL_WORDS: &[&str] = &[
    "email",
    "e mail",
    "email address",
    "e mail address",
    "work email",
    "contact email",
    "mail",
    "e mail adresse",
    "courriel",
    "adresse e mail",
    "correo",
    "correo electrónico",
    "correo electronico",
];

fn fold_header(h: &str) -> String {
    h.trim()
        .to_lowercase()
        .chars()
        .map(|c| if c == '_' || c == '-' || c == '.' { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

impl ColumnMap {
    /// Maps headers case-insensitively by common synonyms; an exact synonym beats a
    /// header that merely contains a key word.
    pub fn from_headers(headers: &[String]) -> Self {
        let folded: Vec<String> = headers.iter().map(|h| fold_header(h)).collect();
        let find = |words: &[&str], key: &[&str], taken: &[Option<usize>]| -> Option<usize> {
            let free = |i: &usize| !taken.contains(&Some(*i));
            folded
                .iter()
                .enumerate()
                .filter(|(i, _)| free(i))
                .find(|(_, h)| words.contains(&h.as_str()))
                .or_else(|| {
                    folded.iter().enumerate().filter(|(i, _)| free(i)).find(|(_, h)| key.iter().any(|k| h.contains(k)))
                })
                .map(|(i, _)| i)
        };
        let email = find(EMAIL_WORDS, &["email", "e mail", "courriel", "correo"], &[]);
        let domain = find(DOMAIN_WORDS, &["domain", "dominio"], &[email]);
        let website =
            find(WEBSITE_WORDS, &["website", "url", "homepage", "webseite", "site web", "sitio web"], &[email, domain]);
        let name = find(
            NAME_WORDS,
            &["company", "account", "organization", "organisation", "firma", "unternehmen", "entreprise", "empresa"],
            &[email, domain, website],
        );
        Self { name, website, domain, email }
    }

    /// An account's name, website and domain as research reads them from its input
    /// row: the trimmed cells of those columns, the domain else from the e-mail.
    pub fn research_fields<S: AsRef<str>>(&self, values: &[S]) -> ResearchFields {
        ResearchFields {
            name: cell(values, self.name),
            website: cell(values, self.website),
            domain: cell(values, self.domain).or_else(|| cell(values, self.email).and_then(|e| domain_from(&e))),
        }
    }
}

/// What [`ColumnMap::research_fields`] finds in a row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResearchFields {
    pub name: Option<String>,
    pub website: Option<String>,
    pub domain: Option<String>,
}

fn cell<S: AsRef<str>>(row: &[S], index: Option<usize>) -> Option<String> {
    index.and_then(|i| row.get(i)).map(|s| s.as_ref().trim()).filter(|s| !s.is_empty()).map(str::to_string)
}

/// What cleaning found in one row, stored with it as JSON (camelCase keys, every one
/// present, in this order), serialised straight from here.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Normalized {
    /// Canonical company name, legal suffix split off.
    pub company: Option<String>,
    pub legal_suffix: Option<String>,
    /// The website column as given (trimmed), even when it is malformed.
    pub website: Option<String>,
    /// The company's host name; never a free-mail provider learnt from an e-mail.
    pub domain: Option<String>,
    pub email: Option<String>,
    pub free_mail: bool,
    pub valid: bool,
    pub reasons: Vec<String>,
    /// Rows sharing this key are duplicates of the first one.
    pub dedupe_key: Option<String>,
}

impl Normalized {
    /// The cleaning result as a JSON object.
    pub fn json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The cleaning result as the JSON text stored with the row.
    pub fn json_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The host of a website, URL, bare domain or e-mail address: lower-case, without
/// scheme, user info, port, path or a leading `www.`.
///
/// Returns `None` when nothing in `s` looks like a host name: it needs a dot and
/// only hostname characters, and a top-level label with a letter (IPv4 literals
/// are the one exception, so loopback test sites still have a domain).
pub fn domain_from(s: &str) -> Option<String> {
    let mut s = s.trim();
    // "Jane Doe <jane@acme.com>" is a common way e-mails get exported.
    if let (Some(open), Some(close)) = (s.find('<'), s.rfind('>')) {
        if open < close {
            s = s[open + 1..close].trim();
        }
    }
    if s.is_empty() {
        return None;
    }
    let lower = s.to_lowercase();
    let mut rest = lower.strip_prefix("mailto:").unwrap_or(&lower);
    if let Some(i) = rest.find("://") {
        rest = &rest[i + 3..];
    } else if let Some(r) = rest.strip_prefix("//") {
        rest = r;
    }
    // The path goes first so an `@` inside it cannot be mistaken for user info.
    let authority = rest.split(['/', '?', '#', '\\']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = host_port.split(':').next().unwrap_or("").trim_end_matches('.');
    if host.is_empty() {
        return None;
    }
    let ascii = if host.is_ascii() {
        host.to_string()
    } else {
        // Internationalised names are compared in their punycode form.
        match url::Host::parse(host) {
            Ok(url::Host::Domain(d)) => d,
            _ => return None,
        }
    };
    let host = match ascii.strip_prefix("www.") {
        Some(h) if h.contains('.') => h.to_string(),
        _ => ascii,
    };
    plausible_host(&host).then_some(host)
}

fn plausible_host(host: &str) -> bool {
    if host.len() > 253 || !host.contains('.') {
        return false;
    }
    if host.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    let labels: Vec<&str> = host.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    // A numeric last label means a mistyped IP or a version number, not a site.
    labels.iter().all(label_ok) && labels.last().is_some_and(|t| t.bytes().any(|b| b.is_ascii_alphabetic()))
}

/// Providers whose domain says nothing about the sender's company.
const FREE_MAIL: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "live.com",
    "msn.com",
    "aol.com",
    "aim.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "proton.me",
    "pm.me",
    "protonmail.com",
    "protonmail.ch",
    "web.de",
    "t-online.de",
    "freenet.de",
    "mail.ru",
    "bk.ru",
    "inbox.ru",
    "list.ru",
    "rambler.ru",
    "qq.com",
    "163.com",
    "126.com",
    "yeah.net",
    "sina.com",
    "zoho.com",
    "zohomail.com",
    "mail.com",
    "ymail.com",
    "rocketmail.com",
    "fastmail.com",
    "tutanota.com",
    "tuta.io",
    "hushmail.com",
    "rediffmail.com",
    "naver.com",
    "hanmail.net",
    "daum.net",
    "orange.fr",
    "wanadoo.fr",
    "free.fr",
    "laposte.net",
    "libero.it",
    "virgilio.it",
    "seznam.cz",
    "wp.pl",
    "o2.pl",
    "interia.pl",
    "ukr.net",
    "comcast.net",
    "verizon.net",
    "att.net",
    "sbcglobal.net",
    "btinternet.com",
    "bigpond.com",
    "shaw.ca",
    "rogers.com",
    "cox.net",
    "earthlink.net",
    "juno.com",
];

/// Brands with a domain per country (yahoo.co.uk, gmx.de, hotmail.fr, ...).
const FREE_MAIL_BRANDS: &[&str] = &["yahoo", "hotmail", "gmx", "yandex", "outlook", "live"];

fn is_free_mail(domain: &str) -> bool {
    if FREE_MAIL.contains(&domain) {
        return true;
    }
    let Some((brand, tld)) = domain.split_once('.') else {
        return false;
    };
    // Only country or generic endings count, so `live.nation.com` stays a company.
    FREE_MAIL_BRANDS.contains(&brand) && tld.split('.').all(|l| (2..=3).contains(&l.len()))
}

/// A legal form that may end a company name.
struct Suffix {
    /// Lower-case words with dots, commas and brackets removed.
    words: &'static [&'static str],
    /// Short forms that are also ordinary words ("Day Spa", "Drinks As") only count
    /// when written like an abbreviation: with dots or two capitals.
    ambiguous: bool,
}

const fn sfx(words: &'static [&'static str]) -> Suffix {
    Suffix { words, ambiguous: false }
}

const fn amb(words: &'static [&'static str]) -> Suffix {
    Suffix { words, ambiguous: true }
}

const SUFFIXES: &[Suffix] = &[
    sfx(&["gmbh", "&", "co", "kg"]),
    sfx(&["ag", "&", "co", "kg"]),
    sfx(&["sa", "de", "cv"]),
    sfx(&["s", "de", "rl"]),
    sfx(&["pty", "ltd"]),
    sfx(&["pty", "limited"]),
    sfx(&["pvt", "ltd"]),
    sfx(&["private", "limited"]),
    sfx(&["pte", "ltd"]),
    sfx(&["co", "ltd"]),
    sfx(&["sdn", "bhd"]),
    sfx(&["inc"]),
    sfx(&["incorporated"]),
    sfx(&["llc"]),
    sfx(&["pllc"]),
    sfx(&["ltd"]),
    sfx(&["limited"]),
    sfx(&["ltda"]),
    sfx(&["gmbh"]),
    sfx(&["mbh"]),
    sfx(&["kgaa"]),
    sfx(&["ohg"]),
    sfx(&["corp"]),
    sfx(&["corporation"]),
    sfx(&["co"]),
    sfx(&["company"]),
    sfx(&["plc"]),
    sfx(&["sarl"]),
    sfx(&["sprl"]),
    sfx(&["bvba"]),
    sfx(&["llp"]),
    sfx(&["oy"]),
    sfx(&["oyj"]),
    sfx(&["srl"]),
    sfx(&["sro"]),
    sfx(&["bhd"]),
    amb(&["ag"]),
    amb(&["sa"]),
    amb(&["sas"]),
    amb(&["bv"]),
    amb(&["nv"]),
    amb(&["ab"]),
    amb(&["as"]),
    amb(&["asa"]),
    amb(&["aps"]),
    amb(&["spa"]),
    amb(&["kg"]),
    amb(&["kk"]),
    amb(&["lp"]),
    amb(&["se"]),
    amb(&["sl"]),
    amb(&["pc"]),
];

fn fold_word(w: &str) -> String {
    w.chars().filter(|c| !matches!(c, '.' | ',' | '(' | ')')).flat_map(char::to_lowercase).collect()
}

fn looks_abbreviated(token: &str) -> bool {
    token.contains('.') || token.chars().filter(|c| c.is_uppercase()).count() >= 2
}

/// Splits "Acme, Inc." into ("Acme", Some("Inc.")), keeping the suffix as written.
fn split_legal_suffix(name: &str) -> (String, Option<String>) {
    // Longest first, so "Co., Ltd." wins over "Ltd." alone; sorted once.
    static LONGEST_FIRST: std::sync::LazyLock<Vec<&'static Suffix>> = std::sync::LazyLock::new(|| {
        let mut all: Vec<&Suffix> = SUFFIXES.iter().collect();
        all.sort_by_key(|s| std::cmp::Reverse(s.words.len()));
        all
    });
    let tokens: Vec<&str> = name.split(' ').collect();
    // Only the last words can be a suffix: only they are folded.
    let tail = tokens.len().saturating_sub(LONGEST_FIRST.first().map_or(0, |s| s.words.len()));
    let folded: Vec<String> = tokens[tail..].iter().map(|t| fold_word(t)).collect();
    for suffix in LONGEST_FIRST.iter() {
        let k = suffix.words.len();
        if k >= tokens.len() {
            continue; // the whole name is no suffix: "Company" stays a name
        }
        let start = tokens.len() - k;
        if folded[start - tail..].iter().zip(suffix.words).any(|(f, w)| f != w) {
            continue;
        }
        if suffix.ambiguous && !looks_abbreviated(tokens[start]) {
            continue;
        }
        let rest = tokens[..start].join(" ");
        let rest = rest.trim_end_matches(|c: char| c == ',' || c.is_whitespace());
        let last = rest.rsplit(' ').next().unwrap_or("").to_lowercase();
        // "Smith & Co." and "The Company" are whole names, not name plus suffix.
        if rest.is_empty() || matches!(last.as_str(), "&" | "and" | "the" | "und" | "et") {
            continue;
        }
        return (rest.to_string(), Some(tokens[start..].join(" ")));
    }
    (name.to_string(), None)
}

fn name_key(name: &str) -> Option<String> {
    let cleaned: String =
        name.chars().filter(|c| c.is_alphanumeric() || c.is_whitespace()).flat_map(char::to_lowercase).collect();
    let collapsed = collapse(&cleaned)?;
    Some(format!("name:{collapsed}"))
}

fn collapse(s: &str) -> Option<String> {
    let joined = s.split_whitespace().collect::<Vec<_>>().join(" ");
    (!joined.is_empty()).then_some(joined)
}

/// A cell with its blanks collapsed, if anything is left.
fn collapsed_cell<S: AsRef<str>>(row: &[S], index: Option<usize>) -> Option<String> {
    index.and_then(|i| row.get(i)).and_then(|v| collapse(v.as_ref()))
}

/// Exactly one `@`, something before it, and a host with a dot after it.
fn email_domain(email: &str) -> Option<String> {
    let (local, host) = email.split_once('@')?;
    if local.is_empty() || host.contains('@') || email.chars().any(char::is_whitespace) {
        return None;
    }
    if !host.contains('.') {
        return None;
    }
    domain_from(host)
}

/// Cleans and validates one CSV row; pure, so import can run it on every row.
pub fn normalize<S: AsRef<str>>(map: &ColumnMap, row: &[S]) -> Normalized {
    let raw_name = collapsed_cell(row, map.name);
    let website = collapsed_cell(row, map.website);
    let raw_domain = collapsed_cell(row, map.domain);
    let email = collapsed_cell(row, map.email).map(|e| {
        let lower = e.to_lowercase();
        lower.strip_prefix("mailto:").map(str::to_string).unwrap_or(lower)
    });

    let (company, legal_suffix) = match raw_name.as_deref().map(split_legal_suffix) {
        Some((c, s)) => (Some(c), s),
        None => (None, None),
    };

    let mut reasons = Vec::new();
    if company.is_none() {
        reasons.push("missing company name".to_string());
    }

    let domain_col = raw_domain.as_deref().and_then(domain_from);
    let website_domain = website.as_deref().and_then(domain_from);
    let mail_domain = email.as_deref().and_then(email_domain);
    let own_domain = domain_col.or(website_domain.clone());
    let free_mail = mail_domain.as_deref().is_some_and(is_free_mail) || own_domain.as_deref().is_some_and(is_free_mail);
    // A gmail address tells us the person's provider, not the company's site.
    let domain = own_domain.or_else(|| mail_domain.clone().filter(|d| !is_free_mail(d)));

    if domain.is_none() {
        reasons.push("missing domain".to_string());
    }
    if let Some(w) = website.as_deref().filter(|_| website_domain.is_none()) {
        reasons.push(format!("malformed website URL: {w}"));
    }
    if let Some(d) = raw_domain.as_deref().filter(|d| domain_from(d).is_none()) {
        reasons.push(format!("malformed domain: {d}"));
    }
    if let Some(e) = email.as_deref().filter(|_| mail_domain.is_none()) {
        reasons.push(format!("malformed email: {e}"));
    }

    let dedupe_key = match (&domain, &company) {
        (Some(d), _) => Some(format!("domain:{d}")),
        (None, Some(c)) => name_key(c),
        (None, None) => None,
    };

    Normalized {
        company,
        legal_suffix,
        website,
        domain,
        email,
        free_mail,
        valid: reasons.is_empty(),
        reasons,
        dedupe_key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Columns: company, website, domain, email.
    fn full_map() -> ColumnMap {
        ColumnMap { name: Some(0), website: Some(1), domain: Some(2), email: Some(3) }
    }

    fn row(name: &str, website: &str, domain: &str, email: &str) -> Normalized {
        let values: Vec<String> = [name, website, domain, email].iter().map(|s| s.to_string()).collect();
        normalize(&full_map(), &values)
    }

    fn reasons(n: &Normalized) -> Vec<String> {
        n.json()["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn messy_name_and_url_are_cleaned() {
        let n = row("  Acme,   Inc. ", "https://www.Acme.com/about?x=1", "", "");
        assert_eq!(n.json()["company"], "Acme");
        assert_eq!(n.json()["legalSuffix"], "Inc.");
        assert_eq!(n.json()["domain"], "acme.com");
        assert_eq!(n.json()["website"], "https://www.Acme.com/about?x=1");
        assert_eq!(n.json()["valid"], true);
        assert_eq!(n.json()["reasons"], json!([]));
        assert_eq!(n.company.as_deref(), Some("Acme"));
        assert_eq!(n.domain.as_deref(), Some("acme.com"));
        assert_eq!(n.dedupe_key.as_deref(), Some("domain:acme.com"));
        assert_eq!(n.json()["dedupeKey"], "domain:acme.com");
    }

    #[test]
    fn json_always_has_every_key() {
        let n = row("Globex GmbH", "", "globex.de", "");
        // Stored as text with every key, in this order.
        assert_eq!(
            n.json_text(),
            r#"{"company":"Globex","legalSuffix":"GmbH","website":null,"domain":"globex.de","email":null,"freeMail":false,"valid":true,"reasons":[],"dedupeKey":"domain:globex.de"}"#
        );
        let json = n.json();
        let obj = json.as_object().unwrap();
        for key in ["company", "legalSuffix", "website", "domain", "email", "freeMail", "valid", "reasons", "dedupeKey"]
        {
            assert!(obj.contains_key(key), "{key} missing");
        }
        assert_eq!(obj.len(), 9);
        assert_eq!(n.json()["company"], "Globex");
        assert_eq!(n.json()["legalSuffix"], "GmbH");
        assert_eq!(n.json()["website"], Value::Null);
        assert_eq!(n.json()["email"], Value::Null);
        assert_eq!(n.json()["freeMail"], false);
    }

    #[test]
    fn legal_suffixes_split_but_ordinary_words_stay() {
        let cases = [
            ("Globex GmbH", "Globex", Some("GmbH")),
            ("Initrode L.L.C.", "Initrode", Some("L.L.C.")),
            ("Hooli Pty Ltd", "Hooli", Some("Pty Ltd")),
            ("Soylent Co., Ltd.", "Soylent", Some("Co., Ltd.")),
            ("Vandelay Industries S.A.", "Vandelay Industries", Some("S.A.")),
            ("Umbrella S.p.A.", "Umbrella", Some("S.p.A.")),
            ("Nokia Oyj", "Nokia", Some("Oyj")),
            ("Müller GmbH & Co. KG", "Müller", Some("GmbH & Co. KG")),
            ("acme corp", "acme", Some("corp")),
            ("Serenity Day Spa", "Serenity Day Spa", None),
            ("Smith & Co.", "Smith & Co.", None),
            ("Smith & Co. Ltd", "Smith & Co.", Some("Ltd")),
            ("Inc.", "Inc.", None),
            ("The Company", "The Company", None),
            ("  Stark    Industries  ", "Stark Industries", None),
        ];
        for (input, company, suffix) in cases {
            let n = row(input, "", "", "");
            assert_eq!(n.json()["company"], company, "{input}");
            assert_eq!(n.json()["legalSuffix"], json!(suffix), "{input}");
        }
    }

    #[test]
    fn email_only_row_takes_the_email_domain() {
        let n = row("Initech", "", "", "  Jane@Initech.IO ");
        assert_eq!(n.json()["email"], "jane@initech.io");
        assert_eq!(n.json()["domain"], "initech.io");
        assert_eq!(n.json()["freeMail"], false);
        assert_eq!(n.json()["valid"], true);
        assert_eq!(n.dedupe_key.as_deref(), Some("domain:initech.io"));
    }

    #[test]
    fn free_mail_is_flagged_and_not_a_company_domain() {
        let n = row("Bob's Plumbing", "", "", "bob.plumber@gmail.com");
        assert_eq!(n.json()["freeMail"], true);
        assert_eq!(n.json()["domain"], Value::Null);
        assert_eq!(n.json()["email"], "bob.plumber@gmail.com");
        assert_eq!(n.domain, None);
        assert_eq!(n.json()["valid"], false);
        assert_eq!(reasons(&n), vec!["missing domain"]);
        // No domain, so the name decides duplicates, punctuation and case ignored.
        assert_eq!(n.dedupe_key.as_deref(), Some("name:bobs plumbing"));

        for provider in ["yahoo.co.uk", "hotmail.fr", "gmx.de", "yandex.ru", "outlook.com", "proton.me"] {
            assert!(is_free_mail(provider), "{provider}");
        }
        for company in ["acme.com", "live.nation.com", "gmail.acme.com", "me.company.com"] {
            assert!(!is_free_mail(company), "{company}");
        }
        // A company site wins over the free-mail address; the flag still shows.
        let n = row("Acme", "acme.com", "", "acme.sales@yahoo.com");
        assert_eq!(n.json()["domain"], "acme.com");
        assert_eq!(n.json()["freeMail"], true);
    }

    #[test]
    fn malformed_website_and_email_give_reasons() {
        let n = row("Bad Data Ltd", "http//bad", "", "bob@");
        assert_eq!(n.json()["valid"], false);
        assert_eq!(n.json()["domain"], Value::Null);
        assert_eq!(n.json()["website"], "http//bad");
        assert_eq!(reasons(&n), vec!["missing domain", "malformed website URL: http//bad", "malformed email: bob@"]);
        for bad in ["bob", "a@b@c.com", "jane@localhost", "@acme.com", "jane doe@acme.com"] {
            let n = row("X", "x.com", "", bad);
            assert!(reasons(&n).contains(&format!("malformed email: {bad}")), "{bad}: {:?}", reasons(&n));
        }
    }

    #[test]
    fn empty_row_misses_both_and_has_no_key() {
        let n = row("   ", "", "  ", "");
        assert_eq!(reasons(&n), vec!["missing company name", "missing domain"]);
        assert_eq!(n.json()["valid"], false);
        assert_eq!(n.json()["dedupeKey"], Value::Null);
        assert_eq!(n.dedupe_key, None);
        assert_eq!(n.company, None);
        // A short row (fewer cells than the map expects) must not panic.
        let n = normalize(&full_map(), &["Acme".to_string()]);
        assert_eq!(n.json()["company"], "Acme");
        // A map without columns at all.
        let none = ColumnMap { name: None, website: None, domain: None, email: None };
        assert_eq!(normalize(&none, &["x".to_string()]).dedupe_key, None);
    }

    #[test]
    fn dedupe_keys_match_across_spellings() {
        let a = row("Acme", "www.acme.com", "", "");
        let b = row("ACME Inc", "https://acme.com/x", "", "");
        assert_eq!(a.dedupe_key, b.dedupe_key);
        assert_eq!(a.dedupe_key.as_deref(), Some("domain:acme.com"));
        // The domain column wins over the website.
        let c = row("Acme", "https://shop.example.org", "ACME.com", "");
        assert_eq!(c.dedupe_key.as_deref(), Some("domain:acme.com"));
        // Without a domain the canonical name decides, suffix and punctuation dropped.
        let d = row("Wayne  Enterprises, Inc.", "", "", "");
        let e = row("wayne enterprises LLC", "", "", "");
        assert_eq!(d.dedupe_key, e.dedupe_key);
        assert_eq!(d.dedupe_key.as_deref(), Some("name:wayne enterprises"));
        assert_ne!(row("Acme", "acme.com", "", "").dedupe_key, row("Acme", "acme.org", "", "").dedupe_key);
    }

    #[test]
    fn garbage_domain_column_is_reported_and_website_used() {
        let n = row("Acme", "https://acme.com", "not a domain", "");
        assert_eq!(n.json()["domain"], "acme.com");
        assert_eq!(reasons(&n), vec!["malformed domain: not a domain"]);
    }

    #[test]
    fn domain_from_handles_urls_emails_and_garbage() {
        let good = [
            ("https://www.Acme.com/about?x=1", "acme.com"),
            ("HTTP://ACME.COM:8080/path", "acme.com"),
            ("acme.com:443", "acme.com"),
            ("www.acme.com", "acme.com"),
            ("  acme.com/  ", "acme.com"),
            ("shop.acme.co.uk", "shop.acme.co.uk"),
            ("jane@initech.io", "initech.io"),
            ("mailto:Jane@Initech.io", "initech.io"),
            ("Jane Doe <jane@initech.io>", "initech.io"),
            ("https://user:pw@acme.com/a@b", "acme.com"),
            ("//cdn.acme.com/x.js", "cdn.acme.com"),
            ("acme.com.", "acme.com"),
            ("http://127.0.0.1:3000/old", "127.0.0.1"),
            ("https://bücher.de", "xn--bcher-kva.de"),
            ("www.com", "www.com"),
        ];
        for (input, want) in good {
            assert_eq!(domain_from(input).as_deref(), Some(want), "{input}");
        }
        let bad = [
            "",
            "   ",
            "http//bad",
            "https:/acme.com",
            "acme",
            "localhost",
            "not a domain",
            "bob@",
            "acme..com",
            "-acme.com",
            "acme_co.com",
            "1.5",
            "http://[::1]:80/",
            "n/a",
            "https://",
        ];
        for input in bad {
            assert_eq!(domain_from(input), None, "{input}");
        }
    }
}
