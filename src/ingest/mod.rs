//! Ingestion: validation, per-tenant limits and rate limiting between the
//! protocol decoders in `api` and the storage core.
