-- A ledger written by the previous version of interlock (before the media-unit columns:
-- images, audio_ms, characters), dumped with sqlite3's iterdump. Four records: chat,
-- dall-e-3 (2 images), whisper-1 (4 s), chat of another tenant; tests/test_ledger_upgrade.py.
BEGIN TRANSACTION;
CREATE TABLE ledger_meta (name TEXT PRIMARY KEY, value REAL NOT NULL);
CREATE TABLE ledger_records (
    request_id TEXT PRIMARY KEY, period INTEGER NOT NULL, ts, tenant, tags, api, requested_model, served_model, provider, key_id, input, cache_read, cache_write_5m, cache_write_1h, output, reasoning, estimated, cost_micros, price_version, unpriced, outcome, attempts, latency_ms, ttft_ms, saved_input, saved_output, trace_id
);
INSERT INTO "ledger_records" VALUES('prev-0',20601,1779926430,'acme','{"project":"search"}','openai','gpt-x','gpt-x','openai','k_0123abcd',100,0,0,0,40,0,0,500,'openai/gpt-x@2025-01-01',0,'ok',1,12.5,NULL,0,0,'4bf92f3577b34da6a3ce929d0e0e4736');
INSERT INTO "ledger_records" VALUES('prev-1',20601,1779926490,'acme','{}','openai','dall-e-3','dall-e-3','openai','k_0123abcd',0,0,0,0,0,0,0,80000,'openai/dall-e-3@2025-01-01',0,'ok',1,12.5,NULL,0,0,NULL);
INSERT INTO "ledger_records" VALUES('prev-2',20601,1779930100,'acme','{"project":"ads"}','openai','whisper-1','whisper-1','openai','k_0123abcd',0,0,0,0,0,0,0,400,'openai/whisper-1@2025-01-01',0,'ok',1,12.5,NULL,0,0,NULL);
INSERT INTO "ledger_records" VALUES('prev-3',20602,1780012810,'globex','{}','openai','gpt-x','gpt-x','openai','k_0123abcd',7,0,0,0,3,0,0,20,'openai/gpt-x@2025-01-01',0,'ok',1,12.5,NULL,0,0,NULL);
CREATE TABLE ledger_rollups (
    grain TEXT NOT NULL, bucket INTEGER NOT NULL, tenant TEXT NOT NULL, tag_key TEXT NOT NULL, tag_value TEXT NOT NULL, model TEXT NOT NULL, provider TEXT NOT NULL, served TEXT NOT NULL,
    requests INTEGER NOT NULL, input_tokens INTEGER NOT NULL, cache_read INTEGER NOT NULL, cache_write INTEGER NOT NULL, output_tokens INTEGER NOT NULL, cost INTEGER NOT NULL,
    PRIMARY KEY (grain, bucket, tenant, tag_key, tag_value, model, provider, served)
) WITHOUT ROWID;
INSERT INTO "ledger_rollups" VALUES('day',1779926400,'acme','','','dall-e-3','openai','dall-e-3',1,0,0,0,0,80000);
INSERT INTO "ledger_rollups" VALUES('day',1779926400,'acme','','','gpt-x','openai','gpt-x',1,100,0,0,40,500);
INSERT INTO "ledger_rollups" VALUES('day',1779926400,'acme','','','whisper-1','openai','whisper-1',1,0,0,0,0,400);
INSERT INTO "ledger_rollups" VALUES('day',1779926400,'acme','project','ads','whisper-1','openai','whisper-1',1,0,0,0,0,400);
INSERT INTO "ledger_rollups" VALUES('day',1779926400,'acme','project','search','gpt-x','openai','gpt-x',1,100,0,0,40,500);
INSERT INTO "ledger_rollups" VALUES('day',1780012800,'globex','','','gpt-x','openai','gpt-x',1,7,0,0,3,20);
INSERT INTO "ledger_rollups" VALUES('hour',1779926400,'acme','','','dall-e-3','openai','dall-e-3',1,0,0,0,0,80000);
INSERT INTO "ledger_rollups" VALUES('hour',1779926400,'acme','','','gpt-x','openai','gpt-x',1,100,0,0,40,500);
INSERT INTO "ledger_rollups" VALUES('hour',1779926400,'acme','project','search','gpt-x','openai','gpt-x',1,100,0,0,40,500);
INSERT INTO "ledger_rollups" VALUES('hour',1779930000,'acme','','','whisper-1','openai','whisper-1',1,0,0,0,0,400);
INSERT INTO "ledger_rollups" VALUES('hour',1779930000,'acme','project','ads','whisper-1','openai','whisper-1',1,0,0,0,0,400);
INSERT INTO "ledger_rollups" VALUES('hour',1780012800,'globex','','','gpt-x','openai','gpt-x',1,7,0,0,3,20);
INSERT INTO "ledger_rollups" VALUES('minute',1779926400,'acme','','','gpt-x','openai','gpt-x',1,100,0,0,40,500);
INSERT INTO "ledger_rollups" VALUES('minute',1779926400,'acme','project','search','gpt-x','openai','gpt-x',1,100,0,0,40,500);
INSERT INTO "ledger_rollups" VALUES('minute',1779926460,'acme','','','dall-e-3','openai','dall-e-3',1,0,0,0,0,80000);
INSERT INTO "ledger_rollups" VALUES('minute',1779930060,'acme','','','whisper-1','openai','whisper-1',1,0,0,0,0,400);
INSERT INTO "ledger_rollups" VALUES('minute',1779930060,'acme','project','ads','whisper-1','openai','whisper-1',1,0,0,0,0,400);
INSERT INTO "ledger_rollups" VALUES('minute',1780012800,'globex','','','gpt-x','openai','gpt-x',1,7,0,0,3,20);
CREATE INDEX ledger_records_period ON ledger_records (period);
CREATE INDEX ledger_records_tenant_ts ON ledger_records (tenant, ts);
COMMIT;
