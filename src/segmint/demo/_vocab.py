"""Fixed vocabularies of the demo shop: categories, product words, names, places."""

from __future__ import annotations

# category -> (median list price in EUR, lognormal sigma, product nouns)
CATEGORIES: dict[str, tuple[float, float, tuple[str, ...]]] = {
    "electronics": (
        180.0,
        0.85,
        ("Headphones", "Smartwatch", "Tablet", "Laptop", "Speaker", "Camera", "Monitor"),
    ),
    "books": (14.0, 0.45, ("Novel", "Cookbook", "Travel Guide", "Biography", "Atlas")),
    "fashion": (42.0, 0.6, ("Linen Shirt", "Wool Coat", "Denim Jacket", "Summer Dress", "Scarf")),
    "beauty": (22.0, 0.55, ("Face Cream", "Perfume", "Lipstick", "Hair Serum", "Body Lotion")),
    "home": (55.0, 0.65, ("Bedding Set", "Table Lamp", "Cushion", "Rug", "Curtain Set")),
    "toys": (28.0, 0.6, ("Building Set", "Plush Bear", "Puzzle", "Toy Car", "Doll House")),
    "sports": (45.0, 0.65, ("Yoga Mat", "Running Vest", "Dumbbell Set", "Tennis Racket")),
    "grocery": (5.0, 0.5, ("Coffee Beans", "Olive Oil", "Dark Chocolate", "Green Tea", "Pasta")),
    "garden": (35.0, 0.7, ("Plant Pot", "Garden Hose", "Seed Kit", "Pruning Shears")),
    "pets": (18.0, 0.6, ("Dog Bed", "Cat Tree", "Pet Food", "Leash", "Chew Toy")),
    "jewelry": (220.0, 0.85, ("Silver Ring", "Gold Necklace", "Pearl Earrings", "Bracelet")),
    "music": (16.0, 0.6, ("Vinyl Record", "Guitar Strings", "Ukulele", "Songbook")),
    "games": (40.0, 0.55, ("Board Game", "Video Game", "Card Game", "Controller")),
    "baby": (28.0, 0.6, ("Baby Blanket", "Stroller Bag", "Bottle Set", "Baby Monitor")),
    "auto": (45.0, 0.7, ("Car Charger", "Seat Cover", "Dash Cam", "Floor Mats")),
    "office": (15.0, 0.6, ("Notebook", "Desk Organizer", "Fountain Pen", "Desk Lamp")),
    "health": (16.0, 0.55, ("Vitamin Pack", "First Aid Kit", "Thermometer", "Massage Ball")),
    "outdoor": (70.0, 0.75, ("Tent", "Hiking Backpack", "Sleeping Bag", "Camping Stove")),
    "kitchen": (38.0, 0.65, ("Chef Knife", "Frying Pan", "Blender", "Espresso Maker")),
    "shoes": (70.0, 0.5, ("Sneakers", "Leather Boots", "Sandals", "Trail Runners")),
}

ADJECTIVES = (
    "Classic",
    "Premium",
    "Eco",
    "Compact",
    "Deluxe",
    "Smart",
    "Vintage",
    "Urban",
    "Linen",
    "Nordic",
    "Essential",
    "Pro",
    "Soft",
    "Bold",
    "Everyday",
)

BRANDS = (
    "Acme",
    "Nordlicht",
    "Vela",
    "Kestrel",
    "Brio",
    "Solace",
    "Fjord",
    "Lumen",
    "Orbit",
    "Tandem",
    "Halden",
    "Mirabel",
)

COLORS = ("black", "white", "grey", "blue", "red", "green", "beige", "navy", "brown", "pink")

SEARCH_TERMS = (
    "gift",
    "sale",
    "black friday",
    "christmas",
    "running",
    "coffee",
    "headphones",
    "dress",
    "lamp",
    "tent",
    "ring",
    "lego",
    "vinyl",
    "sneakers",
    "blender",
)

FIRST_NAMES_F = (
    "anna", "emma", "lea", "sofia", "marie", "julia", "laura", "chloe", "camille", "lucia",
    "giulia", "martina", "eva", "sara", "nina", "zofia", "hanna", "ines", "clara", "elena",
)  # fmt: skip
FIRST_NAMES_M = (
    "lukas", "leon", "paul", "jonas", "felix", "louis", "hugo", "lucas", "daan", "sem",
    "pablo", "hugo", "marco", "luca", "jan", "piotr", "jakub", "tom", "max", "noah",
)  # fmt: skip
LAST_NAMES = (
    "mueller", "schmidt", "schneider", "fischer", "weber", "martin", "bernard", "dubois",
    "devries", "jansen", "garcia", "fernandez", "rossi", "russo", "bianchi", "gruber",
    "huber", "peeters", "janssens", "nowak", "kowalski", "wagner", "becker", "hoffmann",
    "moreau", "lopez", "romano", "bakker", "visser", "wojcik",
)  # fmt: skip

# country -> (share of customers, phone prefix, cities (most populous first))
COUNTRIES: dict[str, tuple[float, str, tuple[str, ...]]] = {
    "DE": (0.40, "+49", ("Berlin", "Hamburg", "Munich", "Cologne", "Frankfurt", "Stuttgart")),
    "FR": (0.15, "+33", ("Paris", "Lyon", "Marseille", "Toulouse", "Lille", "Bordeaux")),
    "NL": (0.10, "+31", ("Amsterdam", "Rotterdam", "Utrecht", "The Hague", "Eindhoven")),
    "ES": (0.08, "+34", ("Madrid", "Barcelona", "Valencia", "Seville", "Bilbao")),
    "IT": (0.08, "+39", ("Rome", "Milan", "Naples", "Turin", "Florence", "Bologna")),
    "AT": (0.07, "+43", ("Vienna", "Graz", "Linz", "Salzburg", "Innsbruck")),
    "BE": (0.06, "+32", ("Brussels", "Antwerp", "Ghent", "Liege", "Bruges")),
    "PL": (0.06, "+48", ("Warsaw", "Krakow", "Wroclaw", "Gdansk", "Poznan")),
}

MALFORMED_TIMESTAMPS = (
    "2025-13-45 99:00",
    "0000-00-00 00:00:00",
    "2025-02-30 12:00:00",
    "N/A",
    "31/12/2025 25:61",
    "yesterday",
)
