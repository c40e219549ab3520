/*
 * launchd's side of launch_activate_socket(3), for tests on a machine without launchd.
 *
 * Same signature and contract as the one in macOS's libSystem: on success *fds points to
 * a malloc'd array of *cnt descriptors that the caller must free(3); otherwise an errno
 * value. Which sockets "launchd" holds comes from FAKE_LAUNCHD_SOCKETS, e.g.
 * "ingest=3;api=4;http=5,6" (descriptors the test passed to the process):
 *   - variable unset          -> ESRCH   (the caller is not a launchd job)
 *   - name not in the list    -> ENOENT  (no such entry in the plist's Sockets)
 *   - name asked for again    -> EALREADY
 * Loaded with LD_PRELOAD into the real daemon, or with ctypes by a test.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NAMES 16
#define MAX_FDS 16

static char activated[MAX_NAMES][64];
static int activated_count;
static void *last_array;
static void *last_freed;

int launch_activate_socket(const char *name, int **fds, size_t *cnt) {
    const char *spec = getenv("FAKE_LAUNCHD_SOCKETS");
    if (spec == NULL)
        return ESRCH;
    for (int i = 0; i < activated_count; i++)
        if (strcmp(activated[i], name) == 0)
            return EALREADY;
    size_t name_len = strlen(name);
    const char *entry = spec;
    while (*entry) {
        const char *end = strchr(entry, ';');
        if (end == NULL)
            end = entry + strlen(entry);
        const char *equals = memchr(entry, '=', (size_t)(end - entry));
        if (equals != NULL && (size_t)(equals - entry) == name_len &&
            strncmp(entry, name, name_len) == 0) {
            int found[MAX_FDS];
            size_t count = 0;
            const char *cursor = equals + 1;
            while (cursor < end && count < MAX_FDS) {
                char *after;
                found[count++] = (int)strtol(cursor, &after, 10);
                cursor = (*after == ',') ? after + 1 : after;
                if (after == cursor && *after != ',')
                    break;
            }
            int *array = malloc(count * sizeof(int));
            if (array == NULL)
                return ENOMEM;
            memcpy(array, found, count * sizeof(int));
            *fds = array;
            *cnt = count;
            last_array = array;
            if (activated_count < MAX_NAMES) {
                strncpy(activated[activated_count], name, 63);
                activated[activated_count++][63] = '\0';
            }
            return 0;
        }
        entry = *end ? end + 1 : end;
    }
    return ENOENT;
}

/* For the binding's own test: which array was handed out, and which one came back. */
void *fake_last_array(void) { return last_array; }
void *fake_last_freed(void) { return last_freed; }

void fake_free(void *pointer) {
    last_freed = pointer;
    free(pointer);
}
