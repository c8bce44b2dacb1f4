"""Generates the bundled demo task: ``demo_train.jsonl`` and ``demo_eval.jsonl`` (deterministic).

The task: the assistant answers every question as a one-line JSON object ``{"answer": "..."}`` and nothing
else. The base SmolLM2-135M-Instruct model answers in free prose, so the learned format is visible at once
and machine-checkable (``tenfold.training.demo_task.score_format``). Questions are short, varied and have
correct short answers; the held-out evaluation prompts use entities and phrasings not in training.

Run ``python src/tenfold/data/make_demo_data.py [OUT_DIR]`` to rewrite both files (default: next to this
script).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"),
            ("Germany", "Berlin"), ("Canada", "Ottawa"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"),
            ("Peru", "Lima"), ("Norway", "Oslo"), ("Greece", "Athens"), ("Portugal", "Lisbon"),
            ("Ireland", "Dublin"), ("Poland", "Warsaw"), ("Austria", "Vienna"), ("Thailand", "Bangkok"),
            ("Argentina", "Buenos Aires"), ("Russia", "Moscow"), ("China", "Beijing"), ("Australia", "Canberra"),
            ("Sweden", "Stockholm"), ("Cuba", "Havana")]
OPPOSITES = [("hot", "cold"), ("up", "down"), ("big", "small"), ("fast", "slow"), ("light", "dark"),
             ("happy", "sad"), ("early", "late"), ("full", "empty"), ("hard", "soft"), ("young", "old"),
             ("wet", "dry"), ("loud", "quiet"), ("strong", "weak"), ("open", "closed")]
SYMBOLS = [("gold", "Au"), ("silver", "Ag"), ("iron", "Fe"), ("oxygen", "O"), ("hydrogen", "H"),
           ("carbon", "C"), ("sodium", "Na"), ("potassium", "K"), ("helium", "He"), ("copper", "Cu"),
           ("lead", "Pb"), ("nitrogen", "N")]
PLURALS = [("mouse", "mice"), ("child", "children"), ("tooth", "teeth"), ("foot", "feet"), ("man", "men"),
           ("person", "people"), ("goose", "geese"), ("leaf", "leaves"), ("knife", "knives"), ("woman", "women")]
SPANISH = [("hello", "hola"), ("thank you", "gracias"), ("cat", "gato"), ("dog", "perro"), ("water", "agua"),
           ("house", "casa"), ("book", "libro"), ("red", "rojo"), ("friend", "amigo"), ("apple", "manzana")]
FACTS = [("How many minutes are in an hour?", "60"), ("How many days are in a week?", "7"),
         ("How many hours are in a day?", "24"), ("How many months are in a year?", "12"),
         ("How many legs does a spider have?", "8"), ("How many sides does a hexagon have?", "6"),
         ("How many continents are there?", "7"), ("How many centimeters are in a meter?", "100"),
         ("How many grams are in a kilogram?", "1000"), ("How many days are in a leap year?", "366"),
         ("What is the largest planet in our solar system?", "Jupiter"),
         ("Who wrote Romeo and Juliet?", "William Shakespeare"),
         ("Who painted the Mona Lisa?", "Leonardo da Vinci"),
         ("At what temperature in Celsius does water boil at sea level?", "100"),
         ("What is the largest ocean on Earth?", "the Pacific Ocean"),
         ("What is the tallest mountain in the world?", "Mount Everest"),
         ("What is the fastest land animal?", "the cheetah"),
         ("What language is mainly spoken in Brazil?", "Portuguese"),
         ("What is the currency of Japan?", "the yen"),
         ("Which planet is known as the Red Planet?", "Mars"),
         ("What gas do plants absorb from the air?", "carbon dioxide"),
         ("What is the longest river in Africa?", "the Nile"),
         ("What do bees make?", "honey"), ("What is frozen water called?", "ice"),
         ("How many players are on a soccer team on the field?", "11"),
         ("What is the main ingredient of guacamole?", "avocado")]
SENTENCES = [("Describe a sunny day in one sentence.", "A sunny day has clear blue skies, bright light and warm air."),
             ("Explain what a verb is in one sentence.", "A verb is a word that describes an action or a state."),
             ("Why do we need sleep? Answer briefly.", "Sleep lets the body and brain rest, repair and store memories."),
             ("Give me a tip for staying focused.", "Work in short blocks with your phone out of reach."),
             ("What does a thermometer measure?", "It measures temperature."),
             ("Summarize what photosynthesis is in one sentence.",
              "Photosynthesis is how plants turn sunlight, water and carbon dioxide into sugar and oxygen."),
             ("Suggest a name for a pet goldfish.", "Bubbles"),
             ("What is a good breakfast before a long walk?", "Oatmeal with fruit and a glass of water."),
             ("Tell me one benefit of reading books.", "Reading builds vocabulary and knowledge."),
             ("Write a short greeting for a birthday card.", "Happy birthday! Wishing you a wonderful year ahead."),
             ("What is the purpose of a seatbelt?", "A seatbelt holds you in place to protect you in a crash."),
             ("Recommend a hobby for a rainy afternoon.", "Try a jigsaw puzzle.")]

TEMPLATES = {
    "capital": ["What is the capital of {x}?", "Name the capital city of {x}.", "Which city is the capital of {x}?"],
    "opposite": ["What is the opposite of \"{x}\"?", "Give me the antonym of {x}.", "What word means the opposite of {x}?"],
    "symbol": ["What is the chemical symbol for {x}?", "Which element symbol stands for {x}?"],
    "plural": ["What is the plural of \"{x}\"?", "How do you write more than one {x}?"],
    "spanish": ["How do you say \"{x}\" in Spanish?", "Translate \"{x}\" into Spanish."],
    "add": ["What is {a} plus {b}?", "Add {a} and {b}.", "What is {a} + {b}?"],
    "mul": ["What is {a} times {b}?", "Multiply {a} by {b}.", "What is {a} x {b}?"],
}

EVAL = [("What is the capital of South Korea?", "Seoul"), ("What is 14 plus 29?", "43"),
        ("What is the opposite of \"tall\"?", "short"), ("What is the chemical symbol for calcium?", "Ca"),
        ("What is the plural of \"ox\"?", "oxen"), ("How do you say \"milk\" in Spanish?", "leche"),
        ("How many sides does an octagon have?", "8"), ("Which planet is closest to the Sun?", "Mercury"),
        ("Who wrote Pride and Prejudice?", "Jane Austen"),
        ("Explain what a noun is in one sentence.", "A noun is a word that names a person, place, thing or idea.")]


def answer(text: str) -> str:
    return json.dumps({"answer": text}, ensure_ascii=False)


def train_pairs(rng: random.Random) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for kind, table in (("capital", CAPITALS[:16]), ("opposite", OPPOSITES[:10]), ("symbol", SYMBOLS),
                        ("plural", PLURALS), ("spanish", SPANISH)):
        for x, y in table:
            pairs.append((rng.choice(TEMPLATES[kind]).format(x=x), y))
    for kind, n in (("add", 5), ("mul", 5)):
        for _ in range(n):
            a, b = rng.randint(2, 40), rng.randint(2, 12)
            pairs.append((rng.choice(TEMPLATES[kind]).format(a=a, b=b), str(a + b if kind == "add" else a * b)))
    pairs += FACTS + SENTENCES
    rng.shuffle(pairs)
    return pairs


def main(out_dir: Path | None = None) -> None:
    here = out_dir or Path(__file__).resolve().parent
    pairs = train_pairs(random.Random(20241122))
    eval_prompts = {q for q, _ in EVAL}
    if eval_prompts & {q for q, _ in pairs}:
        raise SystemExit("an evaluation prompt leaked into the training data")
    with open(here / "demo_train.jsonl", "w", encoding="utf-8") as fh:
        for q, a in pairs:
            row = {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": answer(a)}]}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    with open(here / "demo_eval.jsonl", "w", encoding="utf-8") as fh:
        for q, a in EVAL:
            fh.write(json.dumps({"messages": [{"role": "user", "content": q}], "reference": a}, ensure_ascii=False) + "\n")
    print(f"wrote {len(pairs)} training and {len(EVAL)} evaluation examples to {here}")


if __name__ == "__main__":
    import sys

    main(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
