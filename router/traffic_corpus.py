"""The words and message templates `router.traffic` draws its marketplace mix from.

Plain data: vendor and buyer names are built from these, messages from the topic templates
(`{vendor}` and `{product}` are filled in per message). Changing an entry changes every seeded
mix, so tests and benchmarks that pin a seed see different text.
"""

from __future__ import annotations

ADJECTIVES = (
    "acme",
    "bright",
    "cedar",
    "delta",
    "ember",
    "fable",
    "granite",
    "harbor",
    "indigo",
    "juniper",
    "kestrel",
    "lumen",
    "maple",
    "nimbus",
    "orchid",
    "pioneer",
    "quartz",
    "rustic",
    "summit",
    "tidal",
    "urban",
    "velvet",
    "willow",
    "zephyr",
)
NOUNS = (
    "tools",
    "outdoors",
    "books",
    "kitchen",
    "garden",
    "toys",
    "audio",
    "bikes",
    "crafts",
    "pets",
    "optics",
    "textiles",
    "games",
    "lighting",
    "ceramics",
    "sports",
)
FIRST_NAMES = (
    "Ana",
    "Ben",
    "Chloe",
    "Dmitri",
    "Elif",
    "Femi",
    "Greta",
    "Hiro",
    "Ines",
    "Jonas",
    "Kofi",
    "Lena",
    "Mateo",
    "Nora",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tariq",
    "Uma",
    "Viktor",
    "Wen",
    "Yusuf",
    "Zoe",
)
LAST_NAMES = (
    "Alvarez",
    "Brandt",
    "Chen",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Haddad",
    "Ivanova",
    "Jensen",
    "Kowalski",
    "Lopez",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Petrov",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Weber",
)
PRODUCTS = (
    "cordless drill",
    "hiking boots",
    "cast iron pan",
    "garden hose",
    "board game",
    "bluetooth speaker",
    "road bike helmet",
    "ceramic vase",
    "dog harness",
    "desk lamp",
)
LANGUAGES = ("en", "en", "en", "de", "fr", "es", "nl", "it")

# (topic, subject template, opening sentences); {order} {product} {vendor} are filled in.
BUYER_TOPICS = (
    (
        "shipping",
        "Where is my order {order}?",
        (
            "I ordered a {product} from {vendor} last week and the tracking page has not changed "
            "in four days.",
            "Can you tell me when the package will be delivered?",
        ),
    ),
    (
        "payments",
        "Charged twice for {order}",
        ("My card was charged twice for order {order}.", "Please refund the second payment."),
    ),
    (
        "disputes",
        "Item not received - {order}",
        (
            "The {product} never arrived although the order shows as delivered.",
            "I want to open a dispute if this is not sorted out this week.",
        ),
    ),
    (
        "product",
        "Question about the {product}",
        (
            "Before I order: does the {product} come with a warranty, and is it in stock?",
            "I would need it by the end of the month.",
        ),
    ),
    (
        "returns",
        "Return for order {order}",
        ("The {product} is the wrong size.", "How do I send it back to {vendor}?"),
    ),
    (
        "account",
        "Cannot log in to my account",
        (
            "I cannot log in since yesterday; the password reset email never comes.",
            "I also set up 2fa last month, maybe that is related.",
        ),
    ),
)
SELLER_TOPICS = (
    (
        "Payout missing for last week",
        (
            "Our payout for last week has not reached our bank.",
            "Can you check the settlement status for {vendor}?",
        ),
    ),
    (
        "Listing suspended",
        (
            "Our listing for the {product} was suspended without a reason.",
            "We have uploaded the safety certificate again.",
        ),
    ),
    (
        "Bulk inventory upload fails",
        (
            "The CSV upload for our catalogue fails at row 212.",
            "We sell about 400 items and cannot edit them one by one.",
        ),
    ),
)
SOCIAL_POSTS = (
    "@marketplace three weeks and still no {product}, is anyone reading this?",
    "@marketplace great service from {vendor}, the {product} arrived early!",
    "@marketplace your checkout keeps failing on my phone",
)
FOLLOW_UPS = (
    "Any update on this? It has been two days.",
    "I am still waiting for an answer.",
    "Thanks for the reply. The tracking number you sent does not work.",
    "Please escalate this, I have asked three times now.",
    "Adding a photo of the damaged box.",
)
FILLER = (
    "I have been a customer for years and never had a problem like this before.",
    "The order confirmation says it was dispatched on Monday.",
    "My neighbour did not receive anything either, I asked.",
    "I tried the help centre articles but none of them covers this case.",
    "You can reach me by phone in the afternoon if that is easier.",
    "Please let me know what information you need from me.",
    "Kind regards and thank you for your help.",
)
