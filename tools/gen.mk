# Sub-make for the protobuf-c sources generated into $(GEN) (their names are known only then).
SRCS := $(shell find $(GEN) -name '*.pb-c.c')
OBJS := $(SRCS:$(GEN)/%.c=$(OUT)/%.o)
$(LIB): $(OBJS)
	@rm -f $@
	@ar rcs $@ $(OBJS)
$(OUT)/%.o: $(GEN)/%.c
	@mkdir -p $(dir $@)
	@$(CC) $(CFLAGS) -c $< -o $@
