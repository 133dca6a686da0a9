#!/bin/sh
# Creates promlake's bucket when LocalStack (in Docker) is ready.
awslocal s3 mb s3://promlake || true
