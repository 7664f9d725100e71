/**
 * Common English words that are each exactly one token in cl100k_base (and in most BPE vocabularies) when
 * preceded by a space, so a prompt of N of them is about N tokens. The generated models use cl100k_base;
 * test/dataset.test.ts checks the one-token property. The server's usage.prompt_tokens gives the exact count.
 */
export const PROMPT_WORDS: readonly string[] = [
  "time", "year", "people", "way", "day", "man", "thing", "woman", "life", "child", "world", "school", "state", "family",
  "student", "group", "country", "problem", "hand", "part", "place", "case", "week", "company", "system", "program",
  "question", "work", "government", "number", "night", "point", "home", "water", "room", "mother", "area", "money",
  "story", "fact", "month", "lot", "right", "study", "book", "eye", "job", "word", "business", "issue", "side", "kind",
  "head", "house", "service", "friend", "father", "power", "hour", "game", "line", "end", "member", "law", "car", "city",
  "community", "name", "president", "team", "minute", "idea", "kid", "body", "information", "back", "parent", "face",
  "others", "level", "office", "door", "health", "person", "art", "war", "history", "party", "result", "change",
  "morning", "reason", "research", "girl", "guy", "moment", "air", "teacher", "force", "education", "foot", "boy", "age",
  "policy", "process", "music", "market", "sense", "nation", "plan", "college", "interest", "death", "experience",
  "effect", "use", "class", "control", "care", "field", "development", "role", "effort", "rate", "heart", "drug", "show",
  "leader", "light", "voice", "wife", "police", "mind", "price", "report", "decision", "son", "view", "relationship",
  "town", "road", "arm", "difference", "value", "building", "action", "model", "season", "society", "tax", "director",
  "position", "player", "record", "paper", "space", "ground", "form", "event", "official", "matter", "center", "couple",
  "site", "project", "activity", "star", "table", "need", "court", "oil", "situation", "cost", "industry", "figure",
  "street", "image", "phone", "data", "picture", "practice", "piece", "land", "product", "doctor", "wall", "patient",
  "worker", "news", "test", "movie", "north", "love", "support", "technology", "step", "baby", "computer", "type",
  "attention", "film", "tree", "source", "organization", "hair", "window", "evidence", "population", "truth", "song",
  "river", "stone", "bridge", "garden", "cloud", "apple", "green", "blue", "red", "small", "large", "quick", "slow",
  "bright", "dark", "happy", "simple", "early", "late", "open", "close", "strong",
];
