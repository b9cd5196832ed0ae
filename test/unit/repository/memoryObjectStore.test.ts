import { MemoryObjectStore } from "../../../shared/src/repository/backends/MemoryObjectStore.js";
import { objectStoreContract } from "../../support/objectStoreContract.js";

objectStoreContract("MemoryObjectStore", async () => new MemoryObjectStore());
