license-admin keygen --key-file pool.key            # 0600, never overwrites; a key others may read is refused
license-admin vendor-keygen --out .                  # vendor.key, vendor.pub
license-admin sign-license --vendor-private vendor.key --product cad --seats 15 \
  --sequence 1 --out license.json
POOL=s1=127.0.0.1:7001:7101,s2=127.0.0.1:7002:7102,s3=127.0.0.1:7003:7103
license-server --id s1 --pool $POOL --vendor-key vendor.pub --state-dir state \
  --license license.json --key-file pool.key --json  # and s2, s3 alike
license-client --pool $POOL --product cad --hold 30s --key-file pool.key --json
license-admin status --pool $POOL --key-file pool.key --json
license-admin publish-license license2.json --pool $POOL --key-file pool.key
