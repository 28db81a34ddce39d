//! Blobs: photos, signatures and PQRS attachments, uploaded on their own and referenced by the
//! SHA-256 of their bytes. Only images and PDF are kept, recognised by their bytes; who may read a
//! blob follows from who uploaded it and which cases and sync documents refer to it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::auth::User;
use crate::error::{Error, Result};

/// At most this many blobs go with one message (or one call of [`attach_to_case`]).
pub const MAX_ATTACHMENTS: usize = 10;

/// The SHA-256 of a blob's bytes as 64 lower-case hex digits: its name everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobId(String);

impl BlobId {
    /// Exactly 64 lower-case hex digits; anything else is not a blob id.
    pub fn parse(raw: &str) -> Option<BlobId> {
        let ok = raw.len() == 64 && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| BlobId(raw.to_owned()))
    }

    /// The id of these bytes.
    pub fn of(bytes: &[u8]) -> BlobId {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let hex = Sha256::digest(bytes)
            .iter()
            .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]])
            .map(char::from)
            .collect();
        BlobId(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for BlobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the bytes themselves say they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Jpeg,
    Png,
    Webp,
    Heif,
    Pdf,
}

/// HEIF brands of HEVC-coded images (what phones write as `.heic`).
const HEIC_BRANDS: [&[u8]; 6] = [b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"];

fn sniff(b: &[u8]) -> Option<Format> {
    if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else if b.len() >= 12 && &b[0..4] == b"RIFF" && &b[8..12] == b"WEBP" {
        Some(Format::Webp)
    } else if b.starts_with(b"%PDF-") {
        Some(Format::Pdf)
    } else if is_heif(b) {
        Some(Format::Heif)
    } else {
        None
    }
}

/// An ISO-BMFF `ftyp` box whose brands are HEIF images. Generic `mif1`/`msf1` files are HEIF
/// unless they say they are AVIF, which shares the container but not the codec.
fn is_heif(b: &[u8]) -> bool {
    if b.len() < 16 || &b[4..8] != b"ftyp" {
        return false;
    }
    let box_len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let end = box_len.clamp(16, b.len());
    let major = &b[8..12];
    // Bytes 12..16 are the minor version; the compatible brands follow to the end of the box.
    let mut brands = std::iter::once(major).chain(b[16..end].chunks_exact(4));
    let generic = major == b"mif1" || major == b"msf1";
    if generic {
        !brands.any(|x| x == b"avif" || x == b"avis")
    } else {
        brands.any(|x| HEIC_BRANDS.contains(&x))
    }
}

/// The declared media type (parameters ignored) if it is one we keep, with its canonical name.
fn declared_format(declared: &str) -> Option<(Format, &'static str)> {
    let essence = declared.split(';').next().unwrap_or("").trim();
    let known = [
        ("image/jpeg", Format::Jpeg),
        ("image/png", Format::Png),
        ("image/webp", Format::Webp),
        ("image/heic", Format::Heif),
        ("image/heif", Format::Heif),
        ("application/pdf", Format::Pdf),
    ];
    known
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(essence))
        .map(|(name, format)| (format, name))
}

/// Why an upload was refused before anything was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("the bytes do not hash to the blob id")]
    HashMismatch,
    #[error(
        "only JPEG, PNG, WebP, HEIC/HEIF images and PDF are accepted, declared as what they are"
    )]
    UnsupportedType,
}

/// Bytes that hash to their id and are an accepted type matching what the uploader declared; only
/// [`verify`] makes one, so [`store`] never sees anything else.
#[derive(Debug)]
pub struct Verified<'a> {
    id: BlobId,
    content_type: &'static str,
    bytes: &'a [u8],
}

impl Verified<'_> {
    pub fn id(&self) -> &BlobId {
        &self.id
    }
    pub fn content_type(&self) -> &'static str {
        self.content_type
    }
}

/// Checks an upload: the bytes hash to `claimed`, and their magic number is an accepted type that
/// agrees with the declared Content-Type.
pub fn verify<'a>(
    claimed: &BlobId,
    declared: Option<&str>,
    bytes: &'a [u8],
) -> Result<Verified<'a>, Rejected> {
    if BlobId::of(bytes) != *claimed {
        return Err(Rejected::HashMismatch);
    }
    let (format, content_type) = declared
        .and_then(declared_format)
        .ok_or(Rejected::UnsupportedType)?;
    if sniff(bytes) != Some(format) {
        return Err(Rejected::UnsupportedType);
    }
    Ok(Verified {
        id: claimed.clone(),
        content_type,
        bytes,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct BlobInfo {
    pub sha256: String,
    pub content_type: String,
    pub size: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Blob {
    pub info: BlobInfo,
    pub data: Vec<u8>,
}

/// Stores a verified blob for `user`. Returns it and whether this user had not uploaded it before
/// (per user, so the answer says nothing about what others uploaded). The bytes are kept once.
pub async fn store(pool: &PgPool, user: &User, blob: Verified<'_>) -> Result<(BlobInfo, bool)> {
    let id = blob.id.as_str();
    let mut tx = pool.begin().await?;
    keep_bytes(&mut tx, &blob, Some(user.id)).await?;
    lock(&mut tx, id).await?;
    let created = sqlx::query!(
        "insert into blob_uploads (sha256, user_id) values ($1, $2) on conflict do nothing",
        id,
        user.id
    )
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if created {
        // A field report synced before its photo: the photo is now the report's if this user
        // writes that report (see `field_reports::attach_blobs`), and never if someone else
        // uploads the same bytes.
        sqlx::query!(
            "insert into document_blobs (document_id, sha256)
             select w.report_document_id, $1
             from work_orders w
             join field_reports f on f.work_order_id = w.id
             join sync_document_access a on a.document_id = w.report_document_id
             where a.user_id = $2 and a.mode = 'write'
               and ($1 = any(f.photos) or f.signature_blob = $1)
             on conflict do nothing",
            id,
            user.id
        )
        .execute(&mut *tx)
        .await?;
    }
    if created && user.customer_id.is_some() {
        // An offline draft may have been filed before its photo arrived: look at the
        // customer's outbox again so the photo is attached.
        sqlx::query!(
            "insert into sync_projection_queue (document_id)
             select cd.outbox_document_id from customer_documents cd where cd.customer_id = $1
             on conflict (document_id) do update set queued_at = clock_timestamp(), leased_until = null",
            user.customer_id
        )
        .execute(&mut *tx)
        .await?;
    }
    let info = info(&mut tx, id).await?;
    tx.commit().await?;
    Ok((info, created))
}

/// Keeps a blob's bytes once: a blob stored before (or by a concurrent upload) stays as it is;
/// the bytes are the same. `uploaded_by` is the app user who sent them first, if one did.
async fn keep_bytes(
    conn: &mut PgConnection,
    blob: &Verified<'_>,
    uploaded_by: Option<Uuid>,
) -> Result<()> {
    let id = blob.id.as_str();
    let exists = sqlx::query_scalar!(
        r#"select exists (select 1 from blobs where sha256 = $1) as "exists!""#,
        id
    )
    .fetch_one(&mut *conn)
    .await?;
    if !exists {
        let size = i64::try_from(blob.bytes.len())
            .map_err(|_| Error::Internal("blob size does not fit in i64".into()))?;
        sqlx::query!(
            "insert into blobs (sha256, content_type, size, data, uploaded_by) values ($1, $2, $3, $4, $5)
             on conflict (sha256) do nothing",
            id,
            blob.content_type,
            size,
            blob.bytes,
            uploaded_by
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn info(conn: &mut PgConnection, id: &str) -> Result<BlobInfo> {
    Ok(sqlx::query_as!(
        BlobInfo,
        "select sha256, content_type, size, created_at from blobs where sha256 = $1",
        id
    )
    .fetch_one(conn)
    .await?)
}

/// Stores a verified blob a customer without an app user sent from a chat. It is theirs to
/// attach to their cases ([`attach_customer_blobs`]); the bytes are kept once.
pub async fn store_for_customer(
    pool: &PgPool,
    customer_id: Uuid,
    blob: Verified<'_>,
) -> Result<BlobInfo> {
    let id = blob.id.as_str();
    let mut tx = pool.begin().await?;
    keep_bytes(&mut tx, &blob, None).await?;
    sqlx::query!(
        "insert into blob_customer_uploads (sha256, customer_id) values ($1, $2) on conflict do nothing",
        id,
        customer_id
    )
    .execute(&mut *tx)
    .await?;
    let info = info(&mut tx, id).await?;
    tx.commit().await?;
    Ok(info)
}

/// Attaches blobs a customer without an app user sent ([`store_for_customer`]) to one of their
/// cases, inside the caller's transaction; any other hash is `unknown_attachment` and nothing is
/// attached.
pub async fn attach_customer_blobs(
    conn: &mut PgConnection,
    case_id: Uuid,
    message_id: Option<Uuid>,
    hashes: &[String],
    customer_id: Uuid,
) -> Result<Vec<Attachment>> {
    if hashes.len() > MAX_ATTACHMENTS {
        return Err(Error::invalid(
            "too_many_attachments",
            format!("at most {MAX_ATTACHMENTS} attachments"),
        ));
    }
    let mut ids: Vec<String> = Vec::with_capacity(hashes.len());
    for h in hashes {
        if !ids.contains(h) {
            ids.push(h.clone());
        }
    }
    let found = sqlx::query_as!(
        Attachment,
        "select $3::uuid as message_id, b.sha256, b.content_type, b.size
         from unnest($1::text[]) with ordinality as x (sha256, ord)
         join blobs b on b.sha256 = x.sha256
         join blob_customer_uploads u on u.sha256 = b.sha256 and u.customer_id = $2
         order by x.ord",
        &ids,
        customer_id,
        message_id,
    )
    .fetch_all(&mut *conn)
    .await?;
    if let Some(missing) = ids.iter().find(|h| !found.iter().any(|a| &a.sha256 == *h)) {
        return Err(Error::invalid(
            "unknown_attachment",
            format!("{missing} is not a file you sent"),
        ));
    }
    sqlx::query!(
        "insert into case_attachments (case_id, message_id, sha256, attached_by)
         select $1, $2, x.sha256, null from unnest($3::text[]) with ordinality as x (sha256, ord)
         order by x.ord
         on conflict on constraint case_attachments_once do nothing",
        case_id,
        message_id,
        &ids,
    )
    .execute(&mut *conn)
    .await?;
    Ok(found)
}

/// Serialises, per blob, an upload with the projections of the field reports that name it, until
/// the caller's transaction ends.
pub(crate) async fn lock(conn: &mut PgConnection, id: &str) -> Result<()> {
    sqlx::query!(
        "select pg_advisory_xact_lock(hashtextextended('blob:' || $1, 0))",
        id
    )
    .execute(conn)
    .await?;
    Ok(())
}

struct Row {
    sha256: String,
    content_type: String,
    size: i64,
    created_at: DateTime<Utc>,
    data: Option<Vec<u8>>,
}

/// The one statement of who may read a blob: whoever uploaded it; whoever may see a case it is
/// attached to (the case's customer; the staff who work the case, `processes::require_works_case`);
/// whoever has access to a sync document naming it.
async fn visible(
    db: impl PgExecutor<'_>,
    user: &User,
    ids: &[String],
    with_data: bool,
) -> Result<Vec<Row>> {
    Ok(sqlx::query_as!(
        Row,
        r#"select b.sha256, b.content_type, b.size, b.created_at,
                  case when $4 then b.data end as "data?"
           from blobs b
           where b.sha256 = any($1::text[])
             and (exists (select 1 from blob_uploads u where u.sha256 = b.sha256 and u.user_id = $2)
                  or exists (select 1 from case_attachments a join cases c on c.id = a.case_id
                             cross join staff_scope($2) s
                             where a.sha256 = b.sha256
                               and (c.customer_id = $3 or works_case(s, c.process_code, c.assignee_id)))
                  or exists (select 1 from document_blobs d
                             join sync_document_access s on s.document_id = d.document_id
                             where d.sha256 = b.sha256 and s.user_id = $2))"#,
        ids,
        user.id,
        user.customer_id,
        with_data,
    )
    .fetch_all(db)
    .await?)
}

fn not_found() -> Error {
    Error::not_found("blob_not_found", "blob")
}

/// A blob with its bytes, if `user` may read it; otherwise exactly as missing as one that does
/// not exist.
pub async fn fetch(db: impl PgExecutor<'_>, user: &User, id: &BlobId) -> Result<Blob> {
    let row = visible(db, user, std::slice::from_ref(&id.0), true)
        .await?
        .pop()
        .ok_or_else(not_found)?;
    Ok(Blob {
        data: row.data.ok_or_else(not_found)?,
        info: BlobInfo {
            sha256: row.sha256,
            content_type: row.content_type,
            size: row.size,
            created_at: row.created_at,
        },
    })
}

/// A blob on a case, with the message it came with (None: attached to the case itself).
#[derive(Debug, Clone, Serialize)]
pub struct Attachment {
    pub message_id: Option<Uuid>,
    pub sha256: String,
    pub content_type: String,
    pub size: i64,
}

/// Attaches blobs to a case, or to one of its messages, inside the caller's transaction. The
/// caller has already checked that `user` may write on the case. Each hash must name a blob the
/// user uploaded or may already see and, from staff, one that may be shown to this case's
/// customer ([`staff_may_show`]); else `unknown_attachment` and nothing is attached. Attaching one
/// again is a no-op. Returns the attachments in the order given, duplicates dropped.
pub async fn attach_to_case(
    conn: &mut PgConnection,
    case_id: Uuid,
    message_id: Option<Uuid>,
    hashes: &[String],
    user: &User,
) -> Result<Vec<Attachment>> {
    if hashes.len() > MAX_ATTACHMENTS {
        return Err(Error::invalid(
            "too_many_attachments",
            format!("at most {MAX_ATTACHMENTS} attachments"),
        ));
    }
    let unknown = |h: &str| {
        Error::invalid(
            "unknown_attachment",
            format!("{h} is not a blob you uploaded or may see; upload it first"),
        )
    };
    let mut ids: Vec<String> = Vec::with_capacity(hashes.len());
    for h in hashes {
        let id = BlobId::parse(h).ok_or_else(|| unknown(h))?;
        if !ids.contains(&id.0) {
            ids.push(id.0);
        }
    }
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut found = visible(&mut *conn, user, &ids, false).await?;
    if user.role.is_staff() {
        let allowed = staff_may_show(&mut *conn, user, case_id, &ids).await?;
        found.retain(|r| allowed.contains(&r.sha256));
    }
    let attachments = ids
        .iter()
        .map(|id| {
            found
                .iter()
                .find(|r| r.sha256 == *id)
                .map(|r| Attachment {
                    message_id,
                    sha256: r.sha256.clone(),
                    content_type: r.content_type.clone(),
                    size: r.size,
                })
                .ok_or_else(|| unknown(id))
        })
        .collect::<Result<Vec<_>>>()?;
    sqlx::query!(
        "insert into case_attachments (case_id, message_id, sha256, attached_by)
         select $1, $2, x.sha256, $4 from unnest($3::text[]) with ordinality as x (sha256, ord)
         order by x.ord
         on conflict on constraint case_attachments_once do nothing",
        case_id,
        message_id,
        &ids,
        user.id
    )
    .execute(&mut *conn)
    .await?;
    Ok(attachments)
}

/// Which of `ids` staff may show this case's customer: what the case already shows; what came
/// from this customer (uploaded by one of their users, or in a field report of one of their work
/// orders); and what `user` uploaded themself, unless the same bytes came from another customer
/// (uploaded by them or in a report of theirs). So staff cannot pass one customer's photos to
/// another, even by uploading the bytes again.
async fn staff_may_show(
    conn: &mut PgConnection,
    user: &User,
    case_id: Uuid,
    ids: &[String],
) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar!(
        r#"select h as "sha256!" from unnest($1::text[]) h cross join cases c
           where c.id = $2
             and (exists (select 1 from case_attachments a where a.case_id = c.id and a.sha256 = h)
                  or exists (select 1 from blob_uploads u join users x on x.id = u.user_id
                             where u.sha256 = h and x.customer_id = c.customer_id)
                  or exists (select 1 from document_blobs d
                             join work_orders w on w.report_document_id = d.document_id
                             where d.sha256 = h and w.customer_id = c.customer_id)
                  or (exists (select 1 from blob_uploads u where u.sha256 = h and u.user_id = $3)
                      and not exists (select 1 from blob_uploads u join users x on x.id = u.user_id
                                      where u.sha256 = h and x.customer_id <> c.customer_id)
                      and not exists (select 1 from document_blobs d
                                      join work_orders w on w.report_document_id = d.document_id
                                      where d.sha256 = h and w.customer_id <> c.customer_id)))"#,
        ids,
        case_id,
        user.id
    )
    .fetch_all(conn)
    .await?)
}

/// The attachments of a case itself and of the given messages of it, in the order attached (at
/// most [`MAX_ATTACHMENTS`] per message, and per offline draft on the case itself).
pub async fn case_attachments(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    message_ids: &[Uuid],
) -> Result<Vec<Attachment>> {
    Ok(sqlx::query_as!(
        Attachment,
        "select a.message_id, a.sha256, b.content_type, b.size
         from case_attachments a join blobs b on b.sha256 = a.sha256
         where a.case_id = $1 and (a.message_id is null or a.message_id = any($2))
         order by a.id",
        case_id,
        message_ids
    )
    .fetch_all(db)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[test]
    fn ids_are_lowercase_sha256_hex() {
        let id = BlobId::of(b"abc");
        assert_eq!(
            id.as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(BlobId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(BlobId::parse(&id.as_str().to_uppercase()), None);
        assert_eq!(BlobId::parse(&id.as_str()[1..]), None);
        assert_eq!(BlobId::parse(&format!("{}0", id.as_str())), None);
    }

    #[test]
    fn types_come_from_the_bytes_and_must_match_the_declaration() {
        let ok = |declared: &str, bytes: &[u8]| {
            verify(&BlobId::of(bytes), Some(declared), bytes).map(|v| v.content_type())
        };
        assert_eq!(ok("image/png", PNG), Ok("image/png"));
        assert_eq!(ok("IMAGE/PNG; charset=binary", PNG), Ok("image/png"));
        assert_eq!(
            ok("image/jpeg", b"\xFF\xD8\xFF\xE0\0\x10JFIF"),
            Ok("image/jpeg")
        );
        assert_eq!(
            ok("image/webp", b"RIFF\x24\0\0\0WEBPVP8 "),
            Ok("image/webp")
        );
        assert_eq!(ok("application/pdf", b"%PDF-1.4\n"), Ok("application/pdf"));
        let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic";
        assert_eq!(ok("image/heic", heic), Ok("image/heic"));
        assert_eq!(ok("image/heif", heic), Ok("image/heif"));
        let avif = b"\0\0\0\x1cftypmif1\0\0\0\0avifmif1miaf";
        assert_eq!(ok("image/heif", avif), Err(Rejected::UnsupportedType));
        assert_eq!(ok("application/pdf", PNG), Err(Rejected::UnsupportedType));
        assert_eq!(ok("text/plain", b"hola"), Err(Rejected::UnsupportedType));
        assert_eq!(ok("image/png", b"hola"), Err(Rejected::UnsupportedType));
        assert_eq!(
            verify(&BlobId::of(PNG), None, PNG).map(|v| v.content_type()),
            Err(Rejected::UnsupportedType)
        );
        assert_eq!(
            verify(&BlobId::of(b"other"), Some("image/png"), PNG).map(|v| v.content_type()),
            Err(Rejected::HashMismatch)
        );
    }
}
