#!/bin/sh
# One-shot at every start (idempotent): the lake bucket, and two users scoped to it, so that the services never
# hold MinIO's root key: a writer (Airflow's tasks, the API) and a reader (the model server, Superset).
set -eu
mc alias set team http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "team/$LAKE_BUCKET"

# policy name, quoted S3 actions: allowed on the lake bucket and its objects only
lake_policy() {
  cat > "/tmp/$1.json" <<JSON
{"Version": "2012-10-17",
 "Statement": [{"Effect": "Allow", "Action": [$2],
                "Resource": ["arn:aws:s3:::$LAKE_BUCKET", "arn:aws:s3:::$LAKE_BUCKET/*"]}]}
JSON
  mc admin policy create team "$1" "/tmp/$1.json"
}
lake_policy lake-writer '"s3:*"'
lake_policy lake-reader '"s3:GetBucketLocation", "s3:ListBucket", "s3:GetObject"'

# access key, secret key, policy; attaching a policy the user already has is an error, so check before
lake_user() {
  mc admin user add team "$1" "$2"
  mc admin user info team "$1" | grep -q "$3" || mc admin policy attach team "$3" --user "$1"
}
lake_user "$LAKE_WRITER_ACCESS_KEY_ID" "$LAKE_WRITER_SECRET_ACCESS_KEY" lake-writer
lake_user "$LAKE_READER_ACCESS_KEY_ID" "$LAKE_READER_SECRET_ACCESS_KEY" lake-reader
echo "lake bucket s3://$LAKE_BUCKET ready; users $LAKE_WRITER_ACCESS_KEY_ID (read-write), $LAKE_READER_ACCESS_KEY_ID (read-only)"
