//! Reading an uploaded CSV into a job and its items (SPEC section 6), as it arrives.
//! The bytes stream through a [`Feed`] into the CSV reader on a blocking thread; rows
//! are checked one by one and handed on in chunks, so memory stays flat whatever the
//! file's size. Nothing is written until the first chunk is whole: a small bad file
//! never touches the database, and a large one that turns out bad later is removed
//! before its error is answered (see `Service::start_import`).

use std::collections::VecDeque;
use std::io::{self, Read};

use bytes::{Buf, Bytes, BytesMut};

use super::error::AppError;
use super::rows::{self, ColumnMap, ResearchFields};
use super::store::types::{NewItem, CHUNK_ROWS};
use crate::model::{JobKind, MAX_CONCURRENCY, MAX_NAME_CHARS, MIN_CONCURRENCY};

/// An upload held whole, as tests and scripts hand one to `Service::create_job`.
#[derive(Debug, Clone)]
pub struct Upload {
    pub filename: String,
    pub name: Option<String>,
    pub concurrency: Option<u32>,
    pub bytes: Bytes,
}

/// The settings of an upload form besides its file; either may come before or after
/// the file.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub name: Option<String>,
    pub concurrency: Option<u32>,
}

/// The limits an import enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_rows: usize,
    pub default_concurrency: u32,
    /// Research may take a file whose only research column is a name: an LLM
    /// endpoint is configured to find the website (SPEC section 16).
    pub names_alone: bool,
}

/// Reads the `concurrency` form field: empty means the default; the range is checked
/// at import.
pub fn parse_concurrency(text: &str) -> Result<Option<u32>, AppError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| AppError::BadInput(format!("concurrency must be a whole number from 1 to 64, not `{text}`")))
}

/// Picks the delimiter that splits the header line most: comma, semicolon or tab.
pub fn detect_delimiter(bytes: &[u8]) -> u8 {
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for &b in bytes {
        match b {
            b'"' => quoted = !quoted,
            b'\n' | b'\r' if !quoted => break,
            b',' if !quoted => counts[0] += 1,
            b';' if !quoted => counts[1] += 1,
            b'\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let best = (0..3).max_by_key(|&i| (counts[i], std::cmp::Reverse(i))).unwrap_or(0);
    [b',', b';', b'\t'][best]
}

/// The longest file name kept; longer ones are cut.
const MAX_FILENAME_CHARS: usize = 255;
/// The most columns a file may have: exports of real systems stay far below it.
pub const MAX_COLUMNS: usize = 1000;
/// The longest cell an upload may hold (64 KiB): names, websites and notes are far
/// shorter; a longer cell is a broken file or an attack on every page that shows it.
pub const MAX_CELL_BYTES: usize = 64 * 1024;
/// The longest row (4 MiB): many cells at their limit, and the bound on what one row
/// holds in memory while it is read, even when a quote never closes.
pub const MAX_ROW_BYTES: usize = 4 * 1024 * 1024;
/// A chunk is handed on at [`CHUNK_ROWS`] rows or at this many bytes of input, so a
/// file of wide rows does not make chunks that grow with the rows' width.
const CHUNK_BYTES: usize = 2 * 1024 * 1024;

/// Checks a job name given by a person: trimmed, at most [`MAX_NAME_CHARS`].
pub fn check_name(name: &str) -> Result<String, AppError> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(AppError::BadInput(format!(
            "the name is {chars} characters long; at most {MAX_NAME_CHARS} are allowed"
        )));
    }
    Ok(name.to_string())
}

/// Checks a job's concurrency against the bounds of SPEC section 2.
pub fn check_concurrency(concurrency: i64) -> Result<u32, AppError> {
    if !(i64::from(MIN_CONCURRENCY)..=i64::from(MAX_CONCURRENCY)).contains(&concurrency) {
        return Err(AppError::BadInput(format!(
            "concurrency must be between {MIN_CONCURRENCY} and {MAX_CONCURRENCY}, not {concurrency}"
        )));
    }
    Ok(concurrency as u32)
}

/// Cuts `text` to at most `max` characters.
pub fn cut_chars(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// The name and concurrency a job gets from its form: the name given, or the file's
/// stem; the concurrency given, or the default. Checked whenever they are known: before
/// anything is written, and again once the whole form has been read.
pub fn settle(filename: &str, settings: &Settings, limits: Limits) -> Result<(String, u32), AppError> {
    let concurrency = check_concurrency(i64::from(settings.concurrency.unwrap_or(limits.default_concurrency)))?;
    let given = check_name(settings.name.as_deref().unwrap_or(""))?;
    if !given.is_empty() {
        return Ok((given, concurrency));
    }
    let stem = filename.rsplit_once('.').map_or(filename, |(s, _)| s).trim();
    let name = if stem.is_empty() { "Untitled job".to_string() } else { cut_chars(stem, MAX_NAME_CHARS) };
    Ok((name, concurrency))
}

/// The file name kept with the job: cut to [`MAX_FILENAME_CHARS`], `upload.csv` when
/// none was given.
pub fn stored_filename(filename: &str) -> String {
    match filename.trim() {
        "" => "upload.csv".to_string(),
        f => cut_chars(f, MAX_FILENAME_CHARS),
    }
}

/// The line where a quoted field opens and never closes, watched as the bytes pass.
/// Quotes count only at the start of a field, as in CSV; a stray `"` inside a plain
/// field is just a character. It jumps from quote to quote (`memchr`) instead of
/// looking at every byte, and counts lines only up to the quotes that open.
#[derive(Debug, Clone)]
pub struct QuoteScan {
    delimiter: u8,
    /// The line the next piece starts on.
    line: i64,
    /// Inside quotes: the line the open quote is on.
    open: Option<i64>,
    /// Outside quotes: whether a field starts here (only `\r`s since its start).
    at_start: bool,
    /// Inside quotes, the last piece ended on a `"`: a `"` next makes it `""`.
    quote_at_end: bool,
}

impl QuoteScan {
    pub fn new(delimiter: u8) -> Self {
        Self { delimiter, line: 1, open: None, at_start: true, quote_at_end: false }
    }

    /// Whether a field starts after `stretch`, which follows a point where one started
    /// if `at_start`: only `\r`s may stand between a delimiter or line break and it.
    fn starts_field(&self, stretch: &[u8], at_start: bool) -> bool {
        match stretch.iter().rposition(|&b| b != b'\r') {
            Some(i) => stretch[i] == b'\n' || stretch[i] == self.delimiter,
            None => at_start,
        }
    }

    /// Takes the next piece of the file.
    pub fn feed(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let mut from = 0usize;
        // Newlines before `counted` are in `line_there`.
        let (mut counted, mut line_there) = (0usize, self.line);
        if self.quote_at_end {
            self.quote_at_end = false;
            if data[0] == b'"' {
                from = 1;
            } else {
                self.open = None;
                self.at_start = false;
            }
        }
        loop {
            let Some(found) = memchr::memchr(b'"', &data[from..]) else {
                if self.open.is_none() {
                    self.at_start = self.starts_field(&data[from..], self.at_start);
                }
                break;
            };
            let quote = from + found;
            if self.open.is_some() {
                // Inside quotes: `""` is a quote character; a lone `"` closes the field.
                match data.get(quote + 1) {
                    Some(b'"') => from = quote + 2,
                    Some(_) => {
                        self.open = None;
                        self.at_start = false;
                        from = quote + 1;
                    }
                    None => {
                        self.quote_at_end = true;
                        break;
                    }
                }
            } else if self.starts_field(&data[from..quote], self.at_start) {
                line_there += memchr::memchr_iter(b'\n', &data[counted..quote]).count() as i64;
                counted = quote;
                self.open = Some(line_there);
                from = quote + 1;
            } else {
                // A quote inside a plain field: the field goes on.
                self.at_start = false;
                from = quote + 1;
            }
        }
        self.line += memchr::memchr_iter(b'\n', data).count() as i64;
    }

    /// The line of the quote that is open now, if one is; at the end of the file, the
    /// quote that never closed.
    pub fn open(&self) -> Option<i64> {
        if self.quote_at_end {
            None
        } else {
            self.open
        }
    }
}

/// The line where a quoted field opens and never closes in a whole file, if any.
pub fn unclosed_quote(data: &[u8], delimiter: u8) -> Option<i64> {
    let mut scan = QuoteScan::new(delimiter);
    scan.feed(data);
    scan.open()
}

/// The file's bytes as they arrive, read by the CSV reader: it strips a byte order
/// mark, refuses a file over the size limit and a row over [`MAX_ROW_BYTES`], watches
/// quotes, and keeps only the pieces that line counting still needs.
pub struct Feed<I> {
    source: I,
    max_bytes: usize,
    /// Pieces not yet handed to the reader, oldest first.
    unread: VecDeque<Bytes>,
    /// Pieces not yet counted past, oldest first; the first starts at `kept_from`.
    kept: VecDeque<Bytes>,
    kept_from: u64,
    /// Bytes received (after the byte order mark) and handed to the reader.
    received: u64,
    handed: u64,
    /// Every newline before byte `counted.0` is counted in `counted.1`.
    counted: (u64, i64),
    /// Started once the delimiter is known ([`Feed::watch_quotes`]).
    quotes: Option<QuoteScan>,
    /// Where the row being read starts.
    row_start: u64,
    /// Whether any byte but white space came.
    text: bool,
    started: bool,
    ended: bool,
    failed: Option<AppError>,
}

impl<I: Iterator<Item = Result<Bytes, AppError>>> Feed<I> {
    pub fn new(source: I, max_bytes: usize) -> Self {
        Self {
            source,
            max_bytes,
            unread: VecDeque::new(),
            kept: VecDeque::new(),
            kept_from: 0,
            received: 0,
            handed: 0,
            counted: (0, 1),
            quotes: None,
            row_start: 0,
            text: false,
            started: false,
            ended: false,
            failed: None,
        }
    }

    /// Takes the next piece from the source; `false` at its end.
    fn pull(&mut self) -> Result<bool, AppError> {
        if self.ended {
            return Ok(false);
        }
        let piece = if self.started {
            match self.source.next() {
                Some(piece) => piece?,
                None => {
                    self.ended = true;
                    return Ok(false);
                }
            }
        } else {
            // The first three bytes decide whether a byte order mark leads.
            self.started = true;
            let mut head = BytesMut::new();
            while head.len() < 3 {
                match self.source.next() {
                    Some(piece) => head.extend_from_slice(&piece?),
                    None => {
                        self.ended = true;
                        break;
                    }
                }
            }
            let mut head = head.freeze();
            if head.starts_with(b"\xEF\xBB\xBF") {
                head.advance(3);
            }
            head
        };
        if self.received + piece.len() as u64 > self.max_bytes as u64 {
            return Err(AppError::TooLarge(format!("the file is larger than the limit of {} bytes", self.max_bytes)));
        }
        if !self.text {
            self.text = piece.iter().any(|b| !b.is_ascii_whitespace());
        }
        if let Some(quotes) = &mut self.quotes {
            quotes.feed(&piece);
        }
        self.received += piece.len() as u64;
        if !piece.is_empty() {
            self.kept.push_back(piece.clone());
            self.unread.push_back(piece);
        }
        Ok(!self.ended || !self.unread.is_empty())
    }

    /// The start of the file, up to its first line break outside quotes (or all of a
    /// file without one, or [`MAX_ROW_BYTES`] of it), for finding the delimiter; it
    /// stays unread.
    fn header_bytes(&mut self) -> Result<Vec<u8>, AppError> {
        let (mut looked, mut quoted) = (0usize, false);
        loop {
            let bytes: Vec<u8> = self.unread.iter().flat_map(|p| p.iter().copied()).collect();
            for &b in &bytes[looked..] {
                match b {
                    b'"' => quoted = !quoted,
                    b'\n' if !quoted => return Ok(bytes),
                    _ => {}
                }
            }
            looked = bytes.len();
            if self.received > MAX_ROW_BYTES as u64 || !self.pull()? {
                return Ok(bytes);
            }
        }
    }

    /// Starts watching quotes for `delimiter`, from the first byte received.
    fn watch_quotes(&mut self, delimiter: u8) {
        let mut scan = QuoteScan::new(delimiter);
        for piece in &self.kept {
            scan.feed(piece);
        }
        self.quotes = Some(scan);
    }

    /// The line of the quote open now (at the end of the file: never closed), if any.
    fn open_quote(&self) -> Option<i64> {
        self.quotes.as_ref().and_then(QuoteScan::open)
    }

    /// Whether only line breaks stand between `from` and `to` (blank lines, which the
    /// reader skips without a record).
    fn only_line_breaks(&self, from: u64, to: u64) -> bool {
        let mut start = self.kept_from;
        for piece in &self.kept {
            let end = start + piece.len() as u64;
            let (a, b) = (from.max(start), to.min(end));
            if a < b && piece[(a - start) as usize..(b - start) as usize].iter().any(|c| !matches!(c, b'\r' | b'\n')) {
                return false;
            }
            start = end;
        }
        true
    }

    /// The byte at `offset`, if it was received and is still kept.
    fn byte_at(&self, offset: u64) -> Option<u8> {
        let mut start = self.kept_from;
        for piece in &self.kept {
            let end = start + piece.len() as u64;
            if offset < end {
                return offset.checked_sub(start).map(|i| piece[i as usize]);
            }
            start = end;
        }
        None
    }

    /// The physical line a record starts on, given where the reader says it starts
    /// (which can sit on the line break before it: CRLF, blank lines). Quoted line
    /// breaks of earlier rows count too, as an editor shows them. Calls come in file
    /// order; pieces counted past are let go.
    fn line_of(&mut self, position: u64) -> i64 {
        // Behind what was counted only line breaks stand (a skipped run of blank lines).
        let mut byte = position.max(self.counted.0);
        while matches!(self.byte_at(byte), Some(b'\r' | b'\n')) {
            byte += 1;
        }
        let (mut from, mut line) = self.counted;
        while from < byte {
            let Some(front) = self.kept.front() else { break };
            let end = self.kept_from + front.len() as u64;
            let upto = byte.min(end);
            let slice = &front[(from - self.kept_from) as usize..(upto - self.kept_from) as usize];
            line += memchr::memchr_iter(b'\n', slice).count() as i64;
            from = upto;
            if upto == end {
                self.kept.pop_front();
                self.kept_from = end;
            }
        }
        self.counted = (from, line);
        line
    }

    /// The error that stopped the feed, taken out once.
    fn take_failure(&mut self) -> Option<AppError> {
        self.failed.take()
    }

    fn fail(&mut self, e: AppError) -> io::Error {
        let error = io::Error::other(e.to_string());
        self.failed = Some(e);
        error
    }
}

impl<I: Iterator<Item = Result<Bytes, AppError>>> Read for Feed<I> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failed.is_some() {
            return Err(io::Error::other("the upload stopped"));
        }
        while self.unread.is_empty() {
            match self.pull() {
                Ok(true) => {}
                Ok(false) => return Ok(0),
                Err(e) => return Err(self.fail(e)),
            }
        }
        if self.handed - self.row_start > MAX_ROW_BYTES as u64 && self.only_line_breaks(self.row_start, self.handed) {
            // Blank lines, which make no row: counted and let go of.
            self.row_start = self.handed;
            self.line_of(self.handed);
        }
        if self.handed - self.row_start > MAX_ROW_BYTES as u64 {
            let line = self.line_of(self.row_start);
            let limit = MAX_ROW_BYTES / (1024 * 1024);
            let e = match self.open_quote() {
                Some(open) => AppError::BadInput(format!(
                    "line {line}: the row is longer than {limit} MiB: the quoted field opened on line {open} may \
                     never be closed"
                )),
                None => AppError::BadInput(format!("line {line}: the row is longer than {limit} MiB")),
            };
            return Err(self.fail(e));
        }
        let piece = self.unread.front_mut().expect("a piece is waiting");
        let n = buf.len().min(piece.len());
        buf[..n].copy_from_slice(&piece[..n]);
        piece.advance(n);
        if piece.is_empty() {
            self.unread.pop_front();
        }
        self.handed += n as u64;
        Ok(n)
    }
}

/// The dedupe keys an import has seen, in a fixed 4 MiB: a key it answers "new" for
/// is certainly new (a Bloom filter: no false "new"), so its row needs no look for an
/// earlier one; a key seen before, or one of the few that collide, is looked up in the
/// database. At 1,000,000 keys about 1 in 1,600 is a collision.
struct SeenKeys {
    bits: Vec<u64>,
}

impl SeenKeys {
    const BITS: u64 = 1 << 25;
    const HASHES: u64 = 3;

    fn new() -> Self {
        Self { bits: vec![0; (Self::BITS / 64) as usize] }
    }

    /// Records `key`; whether it was certainly not seen before.
    fn insert(&mut self, key: &str) -> bool {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
        let (a, b) = (hash & 0xffff_ffff, (hash >> 32) | 1);
        let mut new = false;
        for i in 0..Self::HASHES {
            let bit = a.wrapping_add(i.wrapping_mul(b)) % Self::BITS;
            let (word, mask) = ((bit / 64) as usize, 1u64 << (bit % 64));
            new |= self.bits[word] & mask == 0;
            self.bits[word] |= mask;
        }
        new
    }
}

/// What the parser hands on: the header's columns once, then chunks of items.
#[derive(Debug)]
pub enum Parsed {
    Columns(Vec<String>),
    Items(Vec<NewItem>),
}

/// A record's fields as text, the record starting on line `line`. Refused with the line
/// of the bad byte: a field that is not UTF-8, or a NUL byte (valid UTF-8, but no
/// database keeps it in text; a file full of them was saved as UTF-16).
fn fields(record: &csv::ByteRecord, line: i64) -> Result<Vec<&str>, AppError> {
    let line_at = |at: usize| line + newlines(&record.as_slice()[..at]);
    let mut out = Vec::with_capacity(record.len());
    let mut offset = 0usize;
    for field in record.iter() {
        match std::str::from_utf8(field) {
            Ok(text) => out.push(text),
            Err(e) => {
                let line = line_at(offset + e.valid_up_to());
                return Err(AppError::BadInput(format!("line {line}: the file is not valid UTF-8 text")));
            }
        }
        offset += field.len();
    }
    if let Some(at) = memchr::memchr(0, record.as_slice()) {
        return Err(AppError::BadInput(format!(
            "line {}: the file holds a NUL byte: save it as UTF-8 text (not UTF-16)",
            line_at(at)
        )));
    }
    Ok(out)
}

/// Reads an upload as it arrives and hands on its columns, then its items in chunks of
/// [`CHUNK_ROWS`] rows (or [`CHUNK_BYTES`]), each checked: encoding, quoting, width,
/// cell sizes and, for research, a row's name or website. The last chunk goes only
/// after the file's end was checked, so an error in a file of one chunk is answered
/// before anything is handed on. `emit` returning `false` stops the read (nobody
/// listens any more).
pub fn parse<I: Iterator<Item = Result<Bytes, AppError>>>(
    kind: JobKind,
    mut feed: Feed<I>,
    limits: &Limits,
    mut emit: impl FnMut(Parsed) -> bool,
) -> Result<(), AppError> {
    let max_rows = limits.max_rows;
    let head = feed.header_bytes()?;
    let delimiter = detect_delimiter(&head);
    feed.watch_quotes(delimiter);
    let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).has_headers(false).from_reader(feed);
    let mut record = csv::ByteRecord::new();
    // One read, with the feed's own failure (size, row length, a broken upload) in
    // place of the reader's I/O error.
    let read = |reader: &mut csv::Reader<Feed<I>>, record: &mut csv::ByteRecord| -> Result<bool, AppError> {
        let more = match reader.read_byte_record(record) {
            Ok(more) => more,
            Err(e) => {
                return Err(reader
                    .get_mut()
                    .take_failure()
                    .unwrap_or_else(|| AppError::BadInput(format!("the CSV cannot be read: {e}"))))
            }
        };
        let next = reader.position().byte();
        reader.get_mut().row_start = next;
        Ok(more)
    };

    // The header.
    let empty = || AppError::BadInput("the file is empty: a header row and at least one row are needed".into());
    if !read(&mut reader, &mut record)? {
        return Err(empty());
    }
    let header_line = reader.get_mut().line_of(record.position().map_or(0, |p| p.byte()));
    let header = fields(&record, header_line)?;
    if header.len() > MAX_COLUMNS {
        return Err(AppError::BadInput(format!(
            "line 1: the header has {} columns; at most {MAX_COLUMNS} are allowed",
            header.len()
        )));
    }
    if let Some(long) = header.iter().map(|h| h.len()).find(|len| *len > MAX_CELL_BYTES) {
        return Err(AppError::BadInput(format!(
            "line 1: a header cell is {long} bytes long; at most {MAX_CELL_BYTES} are allowed"
        )));
    }
    let mut columns: Vec<String> = header.iter().map(|h| h.trim().to_string()).collect();
    if columns.iter().all(String::is_empty) {
        // Only white space in the whole file is an empty file; anything after a blank
        // header is a header missing.
        while !reader.get_ref().text && read(&mut reader, &mut record)? {
            // What was read is let go of: a file of blank cells stays out of memory.
            let next = reader.position().byte();
            reader.get_mut().line_of(next);
        }
        return Err(if reader.get_ref().text {
            AppError::BadInput("line 1: the header row is empty".into())
        } else {
            empty()
        });
    }
    dedupe_headers(&mut columns);
    let map = ColumnMap::from_headers(&columns);
    if let Some(problem) = cannot_work(kind, &map, limits.names_alone) {
        return Err(AppError::BadInput(format!(
            "line 1: {problem} (columns found: {})",
            cut_chars(&columns.join(", "), 500)
        )));
    }
    let width = columns.len();
    if !emit(Parsed::Columns(columns)) {
        return Ok(());
    }

    // The rows.
    let (mut rows, mut chunk, mut chunk_bytes) = (0usize, Vec::new(), 0usize);
    let mut seen = (kind == JobKind::Preprocess).then(SeenKeys::new);
    while read(&mut reader, &mut record)? {
        let line = reader.get_mut().line_of(record.position().map_or(0, |p| p.byte()));
        let cells = fields(&record, line)?;
        if !is_data_row(&cells, width, line)? {
            continue;
        }
        rows += 1;
        if rows > max_rows {
            return Err(AppError::TooLarge(format!("the file has more than {max_rows} rows, the limit")));
        }
        if let Some(long) = cells.iter().take(width).map(|c| c.len()).find(|len| *len > MAX_CELL_BYTES) {
            return Err(AppError::BadInput(format!(
                "line {line}: a cell is {long} bytes long; at most {MAX_CELL_BYTES} are allowed"
            )));
        }
        // Empty trailing cells are left out (readers fill them in), so a wide header
        // over short rows costs nothing per row.
        let used = cells.iter().rposition(|v| !v.is_empty()).map_or(0, |i| i + 1);
        let mut item = new_item(kind, &map, line, &cells[..used.min(width)])?;
        if let (Some(seen), Some(key)) = (seen.as_mut(), item.dedupe_key.as_deref()) {
            item.new_key = seen.insert(key);
        }
        chunk_bytes += item.input.len();
        chunk.push(item);
        if chunk.len() >= CHUNK_ROWS || chunk_bytes >= CHUNK_BYTES {
            chunk_bytes = 0;
            if !emit(Parsed::Items(std::mem::take(&mut chunk))) {
                return Ok(());
            }
        }
    }
    if let Some(line) = reader.get_ref().open_quote() {
        return Err(AppError::BadInput(format!("line {line}: a quoted field is never closed")));
    }
    if rows == 0 {
        return Err(AppError::BadInput("the file has a header row but no rows".into()));
    }
    if !chunk.is_empty() {
        emit(Parsed::Items(chunk));
    }
    Ok(())
}

fn newlines(bytes: &[u8]) -> i64 {
    memchr::memchr_iter(b'\n', bytes).count() as i64
}

/// Reads a whole file held in memory, as an upload would be read, and returns its
/// columns and items: for property tests and the bench.
pub fn parse_whole(kind: JobKind, bytes: Bytes, limits: Limits) -> Result<(Vec<String>, Vec<NewItem>), AppError> {
    let (mut columns, mut items) = (Vec::new(), Vec::new());
    parse(kind, Feed::new(std::iter::once(Ok(bytes)), limits.max_bytes), &limits, |parsed| {
        match parsed {
            Parsed::Columns(c) => columns = c,
            Parsed::Items(chunk) => items.extend(chunk),
        }
        true
    })?;
    Ok((columns, items))
}

/// Why a file with these columns cannot make a job that works (SPEC section 16), if it
/// cannot: preprocessing needs a name, website, domain or e-mail column; research a
/// website or domain (an e-mail's domain counts) unless an LLM endpoint can find the
/// website from a name.
fn cannot_work(kind: JobKind, map: &ColumnMap, names_alone: bool) -> Option<&'static str> {
    let site = map.website.is_some() || map.domain.is_some() || map.email.is_some();
    match kind {
        JobKind::Preprocess if !site && map.name.is_none() => {
            Some("the header has no company name, website, domain or e-mail column, so no row could be cleaned")
        }
        JobKind::Research if !site && map.name.is_none() => Some("the header has no company name, website or domain column"),
        JobKind::Research if !site && !names_alone => Some(
            "the header has no website or domain column; research from names alone needs an LLM endpoint, and none is configured",
        ),
        _ => None,
    }
}

/// Whether a row is data: `false` for a blank one, which is skipped; an error for one
/// with cells beyond the header's width.
fn is_data_row(cells: &[&str], width: usize, line: i64) -> Result<bool, AppError> {
    if cells.iter().all(|v| v.trim().is_empty()) {
        return Ok(false);
    }
    if cells.len() > width && !cells[width..].iter().all(|v| v.trim().is_empty()) {
        return Err(AppError::BadInput(format!(
            "line {line}: the row has {} fields but the header has {width}",
            cells.len()
        )));
    }
    Ok(true)
}

fn no_research_cells(line: i64) -> AppError {
    AppError::BadInput(format!("line {line}: the row has neither a company name nor a website or domain"))
}

fn new_item(kind: JobKind, map: &ColumnMap, line: i64, cells: &[&str]) -> Result<NewItem, AppError> {
    let input = serde_json::to_string(cells).map_err(|e| AppError::Internal(e.to_string()))?;
    match kind {
        JobKind::Research => {
            let ResearchFields { name, website, domain } = map.research_fields(cells);
            if name.is_none() && website.is_none() && domain.is_none() {
                return Err(no_research_cells(line));
            }
            Ok(NewItem { line, name, website, domain, input, ..NewItem::default() })
        }
        JobKind::Preprocess => {
            let n = rows::normalize(map, cells);
            let normalized = n.json_text();
            Ok(NewItem {
                line,
                name: n.company,
                website: n.website,
                domain: n.domain,
                input,
                normalized: Some(normalized),
                dedupe_key: n.dedupe_key,
                new_key: false,
            })
        }
    }
}

/// Repeated header names get a number so every column keeps its own key.
fn dedupe_headers(headers: &mut [String]) {
    let mut taken = std::collections::HashSet::new();
    for (i, header) in headers.iter_mut().enumerate() {
        if header.is_empty() {
            *header = format!("column {}", i + 1);
        }
        let base = header.clone();
        let mut n = 2;
        while !taken.insert(header.clone()) {
            *header = format!("{base} ({n})");
            n += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn headers_map_by_synonym_and_case() {
        let m = ColumnMap::from_headers(&h(&["Account Name", "Homepage", "E-Mail", "Notes"]));
        assert_eq!(m, ColumnMap { name: Some(0), website: Some(1), domain: None, email: Some(2) });
        let m = ColumnMap::from_headers(&h(&["id", "ORGANIZATION", "company_domain", "Website URL"]));
        assert_eq!(m, ColumnMap { name: Some(1), website: Some(3), domain: Some(2), email: None });
        let m = ColumnMap::from_headers(&h(&["foo", "bar"]));
        assert_eq!(m, ColumnMap::default());
        // German, French and Spanish headers (SPEC section 16).
        let m = ColumnMap::from_headers(&h(&["Firma", "Webseite", "E-Mail"]));
        assert_eq!(m, ColumnMap { name: Some(0), website: Some(1), domain: None, email: Some(2) });
        let m = ColumnMap::from_headers(&h(&["Unternehmen", "Domain"]));
        assert_eq!(m, ColumnMap { name: Some(0), website: None, domain: Some(1), email: None });
        let m = ColumnMap::from_headers(&h(&["Société", "Site web", "Courriel"]));
        assert_eq!(m, ColumnMap { name: Some(0), website: Some(1), domain: None, email: Some(2) });
        let m = ColumnMap::from_headers(&h(&["entreprise", "site_web"]));
        assert_eq!(m, ColumnMap { name: Some(0), website: Some(1), domain: None, email: None });
        let m = ColumnMap::from_headers(&h(&["Empresa", "Sitio web", "Correo electrónico"]));
        assert_eq!(m, ColumnMap { name: Some(0), website: Some(1), domain: None, email: Some(2) });
    }

    #[test]
    fn a_file_that_cannot_work_is_refused_naming_the_columns_found() {
        let refused = |kind, names_alone, file: &str| {
            let limits = Limits { names_alone, ..limits() };
            match parse_whole(kind, Bytes::from(file.to_string()), limits) {
                Err(AppError::BadInput(m)) => m,
                other => panic!("{file:?} was taken: {:?}", other.map(|(c, _)| c)),
            }
        };
        let m = refused(JobKind::Preprocess, true, "foo,bar,baz\n1,2,3\n");
        assert!(m.contains("no company name, website, domain or e-mail column"), "{m}");
        assert!(m.contains("columns found: foo, bar, baz"), "{m}");
        let m = refused(JobKind::Research, false, "Company,Notes\nAcme,x\n");
        assert!(m.contains("needs an LLM endpoint"), "{m}");
        assert!(m.contains("columns found: Company, Notes"), "{m}");
        // The same names-only file is taken when an LLM endpoint can find the sites,
        // and a domain, website or e-mail column is always enough.
        let taken = |kind, names_alone, file: &str| {
            parse_whole(kind, Bytes::from(file.to_string()), Limits { names_alone, ..limits() }).is_ok()
        };
        assert!(taken(JobKind::Research, true, "Company,Notes\nAcme,x\n"));
        assert!(taken(JobKind::Research, false, "Firma;Webseite\nAcme;acme.example\n"));
        assert!(taken(JobKind::Research, false, "Name,E-Mail\nAcme,jo@acme.example\n"));
        assert!(taken(JobKind::Preprocess, false, "Company\nAcme\n"));
    }

    #[test]
    fn delimiter_is_detected_outside_quotes() {
        assert_eq!(detect_delimiter(b"a,b,c\n1,2,3"), b',');
        assert_eq!(detect_delimiter(b"a;b;c\n1;2;3"), b';');
        assert_eq!(detect_delimiter(b"a\tb\n1\t2"), b'\t');
        assert_eq!(detect_delimiter(b"\"x,y,z\";b;c\n"), b';');
        assert_eq!(detect_delimiter(b"single\n1"), b',');
    }

    #[test]
    fn only_a_quote_that_opens_a_field_must_close() {
        assert_eq!(unclosed_quote(b"a,b\n\"x,y\n", b','), Some(2));
        assert_eq!(unclosed_quote(b"a,b\nAcme 5\" TV,y\n", b','), None);
        assert_eq!(unclosed_quote(b"a,b\n\"say \"\"hi\"\"\nthere\",y\n", b','), None);
        assert_eq!(unclosed_quote(b"a;b\nx;\"open\n", b';'), Some(2));
    }

    /// The rule of [`unclosed_quote`] stated byte by byte, as plainly as it goes.
    fn unclosed_quote_bytewise(data: &[u8], delimiter: u8) -> Option<i64> {
        let (mut line, mut open_line) = (1i64, 0i64);
        let (mut quoted, mut field_start) = (false, true);
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            if quoted {
                if b == b'"' {
                    if data.get(i + 1) == Some(&b'"') {
                        i += 1;
                    } else {
                        quoted = false;
                    }
                } else if b == b'\n' {
                    line += 1;
                }
            } else if b == b'"' && field_start {
                quoted = true;
                open_line = line;
                field_start = false;
            } else if b == b'\n' {
                line += 1;
                field_start = true;
            } else if b == delimiter {
                field_start = true;
            } else if b != b'\r' {
                field_start = false;
            }
            i += 1;
        }
        quoted.then_some(open_line)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]
        /// The quote-to-quote search answers as the byte-by-byte rule does.
        #[test]
        fn unclosed_quote_follows_the_bytewise_rule(
            bytes in proptest::collection::vec(proptest::sample::select(b"a;,\"\n\r ".to_vec()), 0..48),
            semicolon in proptest::bool::ANY,
        ) {
            let delimiter = if semicolon { b';' } else { b',' };
            proptest::prop_assert_eq!(unclosed_quote(&bytes, delimiter), unclosed_quote_bytewise(&bytes, delimiter));
        }

        /// Fed in pieces, split anywhere (inside `""`, between `\r` and `\n`), the
        /// scan answers as it does over the whole file.
        #[test]
        fn the_quote_scan_answers_alike_however_the_file_is_split(
            bytes in proptest::collection::vec(proptest::sample::select(b"a;,\"\n\r ".to_vec()), 0..48),
            cuts in proptest::collection::vec(0usize..48, 0..4),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut scan = QuoteScan::new(b',');
            let mut from = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                scan.feed(&bytes[from..cut]);
                from = cut;
            }
            proptest::prop_assert_eq!(scan.open(), unclosed_quote_bytewise(&bytes, b','));
        }
    }

    #[test]
    fn repeated_headers_stay_distinct() {
        let mut v = h(&["name", "name", "", "name"]);
        dedupe_headers(&mut v);
        assert_eq!(v, h(&["name", "name (2)", "column 3", "name (3)"]));
        // A header of one name repeated to the column limit stays quick to rename.
        let mut many = vec!["a".to_string(); MAX_COLUMNS];
        dedupe_headers(&mut many);
        assert_eq!(many.iter().collect::<std::collections::HashSet<_>>().len(), MAX_COLUMNS);
        assert_eq!(many[MAX_COLUMNS - 1], format!("a ({MAX_COLUMNS})"));
    }

    fn limits() -> Limits {
        Limits { max_bytes: 1 << 20, max_rows: 1000, default_concurrency: 2, names_alone: true }
    }

    /// Every chunk a file is read into, fed in pieces of `piece` bytes.
    fn chunks(kind: JobKind, file: &[u8], piece: usize, limits: Limits) -> Result<Vec<Vec<NewItem>>, AppError> {
        let pieces: Vec<Result<Bytes, AppError>> = file.chunks(piece).map(|p| Ok(Bytes::copy_from_slice(p))).collect();
        let mut out = Vec::new();
        parse(kind, Feed::new(pieces.into_iter(), limits.max_bytes), &limits, |parsed| {
            if let Parsed::Items(items) = parsed {
                out.push(items);
            }
            true
        })?;
        Ok(out)
    }

    /// A key seen once is never "new" again; of many distinct keys, nearly every one is
    /// "new" the first time.
    #[test]
    fn seen_keys_never_call_a_seen_key_new() {
        let mut seen = SeenKeys::new();
        let keys: Vec<String> = (0..200_000).map(|i| format!("domain:c{i}.example")).collect();
        let first_new = keys.iter().filter(|k| seen.insert(k)).count();
        assert!(first_new > 199_000, "only {first_new} of 200,000 distinct keys were new");
        assert!(keys.iter().all(|k| !seen.insert(k)), "a seen key was called new");
    }

    /// The delimiter is found from the whole header line, even when a quoted header
    /// cell holds a line break and the file arrives a few bytes at a time.
    #[test]
    fn a_header_with_a_quoted_line_break_keeps_its_delimiter() {
        let file = b"\"Company\nName\";Website\nAcme;acme.com\n";
        let items = chunks(JobKind::Preprocess, file, 3, limits()).unwrap().concat();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].input, r#"["Acme","acme.com"]"#);
        assert_eq!(items[0].line, 3);
    }

    /// Blank lines make no row: megabytes of them are no row over the length limit,
    /// and the rows after them keep their lines.
    #[test]
    fn long_runs_of_blank_lines_are_skipped() {
        let blank = 5 * 1024 * 1024;
        let mut file = b"Company\nAcme\n".to_vec();
        file.extend(std::iter::repeat_n(b'\n', blank));
        file.extend(b"Beta\n");
        let limits = Limits { max_bytes: 1 << 24, max_rows: 10, default_concurrency: 2, names_alone: true };
        let items = chunks(JobKind::Research, &file, 64 * 1024, limits).unwrap().concat();
        let lines: Vec<i64> = items.iter().map(|i| i.line).collect();
        assert_eq!(lines, [2, 3 + blank as i64]);
    }

    /// A header that is not UTF-8 is named by its own line, past blank lines before it.
    #[test]
    fn a_bad_header_names_its_own_line() {
        let err = chunks(JobKind::Research, b"\n\nCom\xffpany\nAcme\n", 4096, limits()).unwrap_err();
        assert_eq!(err.to_string(), "line 3: the file is not valid UTF-8 text");
    }

    #[test]
    fn a_header_over_the_column_limit_is_refused() {
        let header = (0..=MAX_COLUMNS).map(|i| format!("c{i}")).collect::<Vec<_>>().join(",");
        let err = chunks(JobKind::Preprocess, format!("{header}\nx\n").as_bytes(), 4096, limits()).unwrap_err();
        assert!(err.to_string().contains("1001 columns"), "{err}");
    }

    #[test]
    fn short_rows_under_a_wide_header_are_stored_short() {
        let header = (1..MAX_COLUMNS).map(|i| format!("c{i}")).collect::<Vec<_>>().join(",");
        let file = format!("company,{header}\nAcme\nBeta,,x\n");
        let items: Vec<NewItem> = chunks(JobKind::Research, file.as_bytes(), 7, limits()).unwrap().concat();
        assert_eq!(items[0].input, r#"["Acme"]"#);
        assert_eq!(items[1].input, r#"["Beta","","x"]"#);
    }

    /// Items come in chunks of [`CHUNK_ROWS`] with the line each row starts on, counted
    /// past quoted line breaks, CRLF and blank lines, and with their cells as given.
    #[test]
    fn chunks_carry_each_rows_line_and_cells_across_chunk_boundaries() {
        let mut file = String::from("Company,Notes\r\n");
        let mut expected = Vec::new();
        let mut line = 2i64;
        for i in 0..CHUNK_ROWS + 7 {
            if i % 1000 == 0 {
                file.push_str("\r\n");
                line += 1;
            }
            if i % 700 == 0 {
                file.push_str(&format!("\"Acme {i}\",\"two\nlines\"\r\n"));
                expected.push((line, format!(r#"["Acme {i}","two\nlines"]"#), Some(format!("Acme {i}"))));
                line += 2;
            } else {
                file.push_str(&format!("  Beta {i} ,\r\n"));
                expected.push((line, format!(r#"["  Beta {i} "]"#), Some(format!("Beta {i}"))));
                line += 1;
            }
        }
        let limits =
            Limits { max_bytes: 1 << 24, max_rows: 10 * CHUNK_ROWS, default_concurrency: 2, names_alone: true };
        // Pieces of 1,000 bytes split rows, CRLFs and quoted line breaks anywhere.
        let chunks = chunks(JobKind::Research, file.as_bytes(), 1000, limits).unwrap();
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), [CHUNK_ROWS, 7]);
        let got: Vec<_> = chunks.into_iter().flatten().map(|it| (it.line, it.input, it.name)).collect();
        assert_eq!(got.len(), expected.len());
        for (got, want) in got.iter().zip(&expected) {
            assert_eq!(got, want);
        }
    }
}
