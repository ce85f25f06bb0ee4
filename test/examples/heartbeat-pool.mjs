// @understudy/heartbeat-pool: a vendor-signed license file, and one whose seat count was raised.
import { Signing } from "@understudy/heartbeat-pool"

const vendor = Signing.generateVendorKeys()
const license = Signing.signLicense(vendor.privatePem, {
  product: "cad",
  seats: 15,
  expiresAtMs: 4e12,
  sequence: 1,
})
const raised = { ...license, seats: 16 }
console.log(
  JSON.stringify({
    signed: Signing.verifyLicense(vendor.publicPem, license),
    raised: Signing.verifyLicense(vendor.publicPem, raised),
  }),
)
